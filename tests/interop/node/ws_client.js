// Node `ws` as the client of the interop matrix: connects and follows the peer rules
// (echo_peer.js), then exits.  usage: node ws_client.js URL [--ca FILE]
"use strict";

const fs = require("fs");
const { WebSocket } = require("ws");
const { follow, exitAtEnd, option, MAX_SIZE } = require("./echo_peer");

const end = exitAtEnd();
const ca = option("ca");
const ws = new WebSocket(process.argv[2], {
  maxPayload: MAX_SIZE,
  ...(ca ? { ca: fs.readFileSync(ca) } : {}),
});
follow(ws, end);
