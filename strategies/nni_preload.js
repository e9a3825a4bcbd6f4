// Preloaded into NNI 3.0's node manager (NODE_OPTIONS=--require) by strategies.compat (fixes 4 and 8).
//
// Fix 4, where the manager listens. NNI's RestServer (nni_node/common/restServer.js) listens on hostName = '0.0.0.0', every
// network interface, and NNI's entry point (nni_node/main.js) never passes another host. This
// keeps NNI's code as it is and changes only that default: a server asked to listen on all
// interfaces (or on no host) listens on SER_NAS_MANAGER_HOST instead (default 127.0.0.1).
'use strict';
const net = require('net');

const host = process.env.SER_NAS_MANAGER_HOST || '127.0.0.1';
const ANY = new Set(['0.0.0.0', '::']);
const listen = net.Server.prototype.listen;

function isPort(value) {
  return typeof value === 'number' || (typeof value === 'string' && /^\d+$/.test(value));
}

net.Server.prototype.listen = function (...args) {
  if (isPort(args[0])) {
    // listen(port[, host][, backlog][, callback])
    if (typeof args[1] === 'string') {
      if (ANY.has(args[1])) args[1] = host;
    } else {
      args.splice(1, 0, host);
    }
  } else if (args[0] && typeof args[0] === 'object' && isPort(args[0].port) &&
             (!args[0].host || ANY.has(args[0].host)) && !args[0].path) {
    // listen(options[, callback])
    args[0] = Object.assign({}, args[0], { host });
  }
  return listen.apply(this, args);
};

// Fix 8, nothing outlives its owner (strategies/lifeline.py). SER_NAS_OWNER=PID:START names the
// process that started this manager's command; when it is gone (exited, killed, SIGKILL too)
// the manager shuts down as on `kill` (NNI's SIGTERM handler stops the experiment and its
// trials) and exits at the latest 5 s later. START is Linux's /proc/PID/stat start time, so a
// reused PID is not taken for the owner; without /proc the PID alone is checked.
const owner = process.env.SER_NAS_OWNER || '';
const [ownerPid, ownerStart] = owner.split(':');

function startOf(pid) {
  try {
    const stat = require('fs').readFileSync(`/proc/${pid}/stat`, 'ascii');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields.length > 19 ? fields[19] : '';
  } catch (error) {
    return '';
  }
}

function ownerAlive() {
  try {
    process.kill(Number(ownerPid), 0);
  } catch (error) {
    if (error.code !== 'EPERM') return false;
  }
  if (!ownerStart) return true;
  const start = startOf(ownerPid);
  return start === '' || start === ownerStart;
}

if (/^\d+$/.test(ownerPid) && Number(ownerPid) > 0 && Number(ownerPid) !== process.pid) {
  const watch = setInterval(() => {
    if (ownerAlive()) return;
    clearInterval(watch);
    process.stderr.write(`ser-nas: the process that started this NNI manager (${owner}) is gone; stopping\n`);
    setTimeout(() => process.exit(1), 5000).unref();
    process.kill(process.pid, 'SIGTERM');
  }, 500);
  watch.unref();
}
