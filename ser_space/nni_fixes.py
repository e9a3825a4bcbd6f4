"""The one NNI 3.0 defect the space meets on its own, fixed when ``ser_space`` is imported.

**TPE cannot read a cell's input choices.** NNI's ``Cell`` makes each input choice a
``CategoricalMultiple(n_chosen=1)``, which has no ``as_legacy_dict``, so NNI's TPE strategy
(``nni/nas/strategy/hpo.py``) fails at once with ``NotImplementedError``, and a NAS
experiment's web UI leaves those choices out ("Cannot convert CategoricalMultiple"). Choosing
one of n is a categorical choice: :func:`apply` gives ``CategoricalMultiple`` an
``as_legacy_dict`` that describes ``n_chosen=1`` as ``choice`` over one-element lists (what
``freeze`` takes back); other ``n_chosen`` still raise NNI's error. It runs when ``ser_space``
is imported, so ``from ser_space import SERSpace`` is enough for every NNI strategy that can
search the space, in an experiment that knows nothing of ``strategies``
(``tests/test_plain_nni.py``). The toolkit's other NNI fixes, for its own runs, are in
``strategies/compat.py``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply"]


def apply() -> None:
    """Give ``CategoricalMultiple(n_chosen=1)`` an ``as_legacy_dict`` (idempotent; a later NNI's own is kept)."""
    from nni.mutable import CategoricalMultiple

    if "as_legacy_dict" in CategoricalMultiple.__dict__:  # ours already, or a later NNI has its own
        return
    unsupported = CategoricalMultiple.as_legacy_dict  # NNI's: raises NotImplementedError

    def as_legacy_dict(self: Any) -> dict:
        if self.n_chosen != 1:
            return unsupported(self)
        return {"_type": "choice", "_value": [[value] for value in self.values]}

    CategoricalMultiple.as_legacy_dict = as_legacy_dict
