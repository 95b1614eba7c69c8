import type { Linter } from 'eslint';
declare const coreBoundary: Linter.Config;
export = coreBoundary;
