import * as path from 'node:path';

/** The golden checkpoints copied into the repository (see fixtures/golden/README.md). */
export const GOLDEN = path.resolve(__dirname, '../../../fixtures/golden');
