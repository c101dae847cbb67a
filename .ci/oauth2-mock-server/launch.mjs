// Runs oauth2-mock-server's own command line (same options, same output) with one
// addition for tests: `--ttl <seconds>` sets how long the access tokens it issues live.
// The package has no such option; its programmatic API has the hooks used here.
//
//   node launch.mjs <path to node_modules/.bin/oauth2-mock-server> [--ttl N] [its options]
//
// `exp` becomes `iat + N`. `iat` is whole seconds rounded down, so `expires_in` is set to the
// whole seconds left until `exp`, rounded down: it never promises more life than the token has.
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [bin, ...rest] = process.argv.slice(2);
if (bin === undefined) {
  console.error("usage: node launch.mjs <oauth2-mock-server binary> [--ttl seconds] [options]");
  process.exit(2);
}
let ttl;
const cliArgs = [];
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === "--ttl") {
    ttl = Number(rest[++i]);
    if (!Number.isInteger(ttl) || ttl <= 0) {
      console.error("--ttl needs a positive whole number of seconds");
      process.exit(2);
    }
  } else {
    cliArgs.push(rest[i]);
  }
}

// The CLI module parses process.argv and starts the server when imported; its default
// export is the promise of the started server.
process.argv = [process.argv[0], bin, ...cliArgs];
const cli = await import(pathToFileURL(realpathSync(bin)).href);
const server = await cli.default;

// Installed before this module yields to the event loop, so before any request is handled.
if (server && ttl !== undefined) {
  server.service.on("beforeTokenSigning", (token) => {
    token.payload.exp = token.payload.iat + ttl;
  });
  server.service.on("beforeResponse", (response) => {
    const jwt = response.body.access_token;
    if (typeof jwt !== "string") return;
    const payload = JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString("utf8"));
    response.body.expires_in = Math.max(0, Math.floor(payload.exp - Date.now() / 1000));
  });
  console.log(`Access tokens live ${ttl} s`);
}
