// ort_bench.mjs — times ONNX Runtime (CPU) on ctphase's network, as a peer
// for the C engine's benchmark.
//
// Loads the ONNX export written by bench/peers.py (input "x" (batch,C,512,512)
// with a dynamic batch axis, output "logits"), and measures the best of
// --reps runs, after one warm-up, in ms per slice at batch 1 and batch 8.
// ONNX Runtime has no input gradients, so only inference is timed.
//
//   cd bench && npm install --ignore-scripts     # once; CPU binaries ship in the package
//   node bench/ort_bench.mjs MODEL.onnx --threads 2 --reps 5 \
//        [--check tests/reference/fixtures/b1_512_c1]
//
// --check DIR runs DIR/x.npy through the model and compares the logits with
// DIR/logits.npy (a make_fixtures.py case; its model.safetensors must be the
// one the ONNX file was exported from). Prints one JSON object on stdout.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';

const SIZE = 512;

function parseArgs(argv) {
  const args = { model: null, threads: 2, reps: 5, check: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--threads') args.threads = Number(argv[++i]);
    else if (a === '--reps') args.reps = Number(argv[++i]);
    else if (a === '--check') args.check = argv[++i];
    else if (!a.startsWith('--') && !args.model) args.model = a;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!args.model || !(args.threads >= 1) || !(args.reps >= 1)) {
    throw new Error('usage: node ort_bench.mjs MODEL.onnx [--threads N] [--reps N] [--check DIR]');
  }
  return args;
}

// Reads a little-endian float32 or int64 C-order .npy file (format 1.x/2.x).
function readNpy(path) {
  const buf = readFileSync(path);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${path}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1]
    .split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${path}: Fortran order`);
  if (descr !== '<f4') throw new Error(`${path}: dtype ${descr}, expected <f4`);
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset + start + hlen, buf.byteOffset + buf.length));
  return { shape, data };
}

// Deterministic N(0,1) values: xorshift32 and Box-Muller.
function randn(n, seed = 12345) {
  let s = seed >>> 0;
  const uniform = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return (s + 1) / 4294967297;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const t = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = r * Math.sin(t);
  }
  return out;
}

// Best wall time of `reps` calls of fn, after one warm-up, in ms.
async function bestMs(fn, reps) {
  await fn();
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return best;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(args.model, {
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const inName = session.inputNames[0];
  const outName = session.outputNames[0];
  // The channel count is the one static non-spatial dimension of the input.
  const meta = session.inputMetadata?.[0];
  const channels = meta && Array.isArray(meta.shape) && typeof meta.shape[1] === 'number'
    ? meta.shape[1] : 1;

  const res = {
    ort_version: ort.env.versions.node ?? ort.env.versions.common,
    threads: args.threads,
    reps: args.reps,
    input: `${SIZE}x${SIZE}`,
    in_channels: channels,
  };
  for (const batch of [1, 8]) {
    const x = new ort.Tensor('float32', randn(batch * channels * SIZE * SIZE), [batch, channels, SIZE, SIZE]);
    const ms = await bestMs(() => session.run({ [inName]: x }), args.reps);
    res[`batch${batch}_ms`] = Math.round((ms / batch) * 100) / 100;
  }

  if (args.check) {
    const x = readNpy(join(args.check, 'x.npy'));
    const want = readNpy(join(args.check, 'logits.npy'));
    const out = await session.run({ [inName]: new ort.Tensor('float32', x.data, x.shape) });
    const got = out[outName].data;
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < want.data.length; i++) {
      diff = Math.max(diff, Math.abs(got[i] - want.data[i]));
      scale = Math.max(scale, Math.abs(want.data[i]));
    }
    res.check = { dir: args.check, logits_max_abs_diff: diff, logits_max_abs: scale };
  }
  res.peak_rss_mb = Math.round(process.resourceUsage().maxRSS / 102.4) / 10; // maxRSS is KiB
  process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
}

main().catch((err) => {
  process.stderr.write(`ort_bench: ${err.message}\n`);
  process.exit(1);
});
