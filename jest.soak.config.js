/**
 * The minute-long soak tests (`npm run test:soak`): the same files `npm test` runs in a short
 * form, for SOAK_SECONDS each (60 unless set), one at a time so they do not load each other.
 * Kept in step with jest.config.js.
 */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test/soak'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  globalSetup: '<rootDir>/test/setup/global-setup.ts',
  globalTeardown: '<rootDir>/test/setup/global-teardown.ts',
  testTimeout: 900000,
  maxWorkers: 1,
};
