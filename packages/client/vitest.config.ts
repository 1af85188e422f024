import { capsyncVitestConfig } from '../../vitest.shared.js';

export default capsyncVitestConfig();
