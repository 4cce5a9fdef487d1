/**
 * The minute-long soak tests (`npm run test:soak`): the same files `npm test` runs in a short
 * form, for SOAK_SECONDS each (60 unless set), one at a time so they do not load each other.
 * Built from jest.config.js, so the two cannot drift (a copied transform list once left out the
 * ES-module packages and the soak stopped compiling).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a CommonJS config reading its sibling
const base = require('./jest.config.js');

/** @type {import('jest').Config} */
module.exports = {
  ...base,
  roots: ['<rootDir>/test/soak'],
  testMatch: ['**/*.test.ts'],
  testTimeout: 900000,
  maxWorkers: 1,
};
