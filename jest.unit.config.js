/**
 * The fast tier: pure rules (red-flag rules, case rules, linking, matching, config), no
 * database and no server. `npm run test:unit`; `npm test` runs these too, with everything else.
 */
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test/unit'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  testTimeout: 10000,
};
