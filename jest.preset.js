// Shared jest settings: TypeScript through swc, workspace packages resolved to their sources
// through the "@graniteflow/source" export condition so tests never need a prior build.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.[tj]sx?$': [
      '@swc/jest',
      {
        jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
        module: { type: 'commonjs' },
      },
    ],
  },
  testEnvironmentOptions: {
    customExportConditions: ['@graniteflow/source', 'node', 'require', 'default'],
  },
  // tfjs-core registers its op gradients only from its ESM build (extensionless imports Node cannot
  // load); jest compiles those files like our own sources.
  transformIgnorePatterns: ['/node_modules/(?!@tensorflow/tfjs-core/dist/(?!tf-core\\.node))'],
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testTimeout: 120000,
};
