import { capsyncVitestConfig } from '../vitest.shared.js';

export default capsyncVitestConfig({ include: ['**/*.test.ts'], testTimeout: 60_000 });
