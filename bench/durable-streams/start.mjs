// Starts the Durable Streams reference server on loopback for the
// side-by-side benchmark (`tether-bench peer-ds`).
//
//   node start.mjs [--port 0] [--data-dir DIR]
//
// Prints one line on stdout, `listening on http://127.0.0.1:PORT`, like
// `tether serve`, so the bench tool can read the address. With --data-dir
// the server is file-backed (log files + LMDB, fdatasync per append): the
// fair comparison with Tether's durable log. Without it, in memory.
import { DurableStreamTestServer } from "@durable-streams/server";

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

const options = {
  port: Number(opt("--port") ?? 0),
  host: "127.0.0.1",
  longPollTimeout: 500,
  // Compression off: the benchmark compares transport and storage, and the
  // tokens are tiny.
  compression: false,
};
const dataDir = opt("--data-dir");
if (dataDir) options.dataDir = dataDir;

const server = new DurableStreamTestServer(options);
const url = await server.start();
console.log(`listening on ${url}`);

const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
