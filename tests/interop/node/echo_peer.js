// The peer rules of tests/interop/conversation.py for a Node `ws` connection: echo each
// whole message with its type, answer "fragment me" with "frag" "men" "ted" in three frames,
// answer "close me" by closing with 4002 "peer bye", record each message and the close
// frame received, and print the record as one line "record {JSON}" when the connection ends.
"use strict";

const RUN_MS = 60000; // the whole run: a peer never outlives it
const MAX_SIZE = 2 ** 21; // the largest message received

function follow(ws, onEnd) {
  const record = { messages: [], frames: null, close: null };
  ws.on("message", (data, isBinary) => {
    record.messages.push([isBinary ? "binary" : "text", data.length]);
    const text = isBinary ? null : data.toString();
    if (text === "close me") {
      ws.close(4002, "peer bye");
    } else if (text === "fragment me") {
      ["frag", "men", "ted"].forEach((fragment, index, all) =>
        ws.send(fragment, { fin: index === all.length - 1 }),
      );
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
  ws.on("close", (code, reason) => {
    // 1005: the close frame had no code (ws reports "no status" so).
    if (code !== 1005 && code !== 1006) record.close = [code, reason.toString()];
    console.log(`record ${JSON.stringify(record)}`);
    onEnd(0);
  });
  ws.on("error", (error) => {
    console.error(`ws peer: ${error.message}`);
    onEnd(1);
  });
}

// Exits with `status` at the end of the connection, or with 1 when the run's time is out.
function exitAtEnd() {
  const timer = setTimeout(() => {
    console.error(`ws peer: no end within ${RUN_MS} ms`);
    process.exit(1);
  }, RUN_MS);
  return (status) => {
    clearTimeout(timer);
    process.exit(status);
  };
}

// `--name VALUE` from the command line, or undefined.
function option(name) {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? process.argv[index + 1] : undefined;
}

module.exports = { follow, exitAtEnd, option, MAX_SIZE };
