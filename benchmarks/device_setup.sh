#!/usr/bin/env bash
# Environment for running this repository on a lent GPU machine that has torch but no network
# (see docs/performance.md). The pure-Python part of the pinned stack travels in .devpkgs/site
# (copied from a venv made by README's install), prepared data in .devpkgs/home:
#   mkdir -p .devpkgs/site && cp -r <venv>/site-packages/{nni,pytorch_lightning,...} .devpkgs/site/
#   SER_NAS_HOME=.devpkgs/home ser-nas data prepare [...]
# Source it: `. benchmarks/device_setup.sh`.
export PYTHONPATH="$PWD:$PWD/.devpkgs/site${PYTHONPATH:+:$PYTHONPATH}"
export SER_NAS_HOME="$PWD/.devpkgs/home"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python3 - <<'PY'
import torch, nni, pytorch_lightning as pl
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
print("nni", nni.__version__, "pytorch-lightning", pl.__version__)
PY
