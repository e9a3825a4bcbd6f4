// Preloaded into NNI 3.0's node manager (NODE_OPTIONS=--require) by strategies.compat, fix 4.
//
// NNI's RestServer (nni_node/common/restServer.js) listens on hostName = '0.0.0.0', every
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
