// Node `ws` as the server of the interop matrix: serves one connection by the peer rules
// (echo_peer.js), then exits.  usage: node ws_server.js [--cert FILE --key FILE]
// Prints "listening on PORT" once listening on 127.0.0.1.
"use strict";

const fs = require("fs");
const http = require("http");
const https = require("https");
const { WebSocketServer } = require("ws");
const { follow, exitAtEnd, option, MAX_SIZE } = require("./echo_peer");

const end = exitAtEnd();
const cert = option("cert");
const server = cert
  ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(option("key")) })
  : http.createServer();
// permessage-deflate on, as its clients have it by default (its servers do not).
const wss = new WebSocketServer({ server, maxPayload: MAX_SIZE, perMessageDeflate: true });
wss.on("connection", (ws) => {
  server.close(); // one connection
  follow(ws, end);
});
server.listen(0, "127.0.0.1", () => console.log(`listening on ${server.address().port}`));
