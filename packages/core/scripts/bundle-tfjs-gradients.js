// tfjs-core ships its op gradients only as ESM with extensionless imports, which Node cannot load
// (its CommonJS build leaves them out; the @tensorflow/tfjs umbrella inlines them the same way).
// After tsc, this inlines them into our compiled registration module so `require` works in Node.
const path = require('node:path');
const esbuild = require('esbuild');

const target = path.join(__dirname, '..', 'dist', 'kernels', 'register_tfjs_gradients.js');
esbuild
  .build({
    entryPoints: [target],
    outfile: target,
    allowOverwrite: true,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'warning',
    external: ['seedrandom', 'long'],
    plugins: [
      {
        // Only tfjs-core's deep ESM gradient files are inlined; its main entry stays shared.
        name: 'keep-tfjs-core-entry-external',
        setup(build) {
          build.onResolve({ filter: /^@tensorflow\/tfjs-core$/ }, (args) => ({ path: args.path, external: true }));
        },
      },
    ],
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
