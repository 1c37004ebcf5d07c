// Unit tests of the extension's pure TypeScript logic (formatting, polling, notifications).
// They import only src/ modules that do not touch JupyterLab, so they run in plain Node.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/labextension/unit/**/*.test.ts'],
    environment: 'node'
  }
});
