// Runs the npm `proxy` package (an HTTP proxy with CONNECT support) on 127.0.0.1 for
// tests/proxy.rs, and reports what it sees on stdout, one line each:
//
//   listening <port>         once, when it accepts connections
//   CONNECT <host:port>      every CONNECT request, before it is authenticated or opened
//   AUTH ok | AUTH refused   with --auth, the outcome of each request's credentials
//   sync                     echoed for every `sync` line read from stdin, so a test knows
//                            every earlier line has been read
//
//   node launch.mjs [--auth user:password]
import http from "node:http";
import readline from "node:readline";
import { createProxy } from "proxy";

const args = process.argv.slice(2);
let expected;
if (args[0] === "--auth") {
  expected = "Basic " + Buffer.from(args[1], "utf8").toString("base64");
}

const server = createProxy(http.createServer());
server.on("connect", (req) => console.log(`CONNECT ${req.url}`));
if (expected !== undefined) {
  server.authenticate = (req) => {
    const ok = req.headers["proxy-authorization"] === expected;
    console.log(`AUTH ${ok ? "ok" : "refused"}`);
    return ok;
  };
}
server.listen(0, "127.0.0.1", () => console.log(`listening ${server.address().port}`));

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "sync") console.log("sync");
});
process.stdin.on("end", () => process.exit(0));
