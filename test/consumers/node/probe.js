// What Node decided about the machine it runs on, one key=value line each.
// test/e2e runs it with the host's node in a limited container.
const os = require("os");
console.log("node_version=" + process.version);
console.log("available_parallelism=" + os.availableParallelism());
console.log("cpus_length=" + os.cpus().length);
console.log("totalmem=" + os.totalmem());
if (typeof process.constrainedMemory === "function") {
  console.log("constrained_memory=" + (process.constrainedMemory() || 0));
}
