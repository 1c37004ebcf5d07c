import { describe, expect, it } from 'vitest';

import { failingCellIndex, PAPERMILL_ERROR_TAG } from '../../../src/failing';

const BANNER = {
  tags: [PAPERMILL_ERROR_TAG],
  source: '<span style="color:red">An Exception was encountered at <a href="#papermill-error-cell">In [2]</a>.</span>'
};
const NOTE = {
  tags: [PAPERMILL_ERROR_TAG],
  source: '<span id="papermill-error-cell" style="color:red">Execution using papermill encountered an exception here</span>'
};
const code = (source: string, tags: string[] = []) => ({ tags, source });

describe('failingCellIndex', () => {
  it("finds the code cell after papermill's note, not the submitted index", () => {
    const cells = [
      BANNER,
      code("input_file = ''", ['parameters']),
      code("input_file = 'b.fits'", ['injected-parameters']),
      code('data = input_file'),
      NOTE,
      code("raise ValueError('cannot read ' + data)")
    ];
    expect(failingCellIndex(cells, 2)).toBe(5);
  });

  it('keeps the reported index without the note', () => {
    expect(failingCellIndex([code('a'), code('b'), code('c')], 2)).toBe(2);
    expect(failingCellIndex([code('a')])).toBeUndefined();
  });

  it('ignores the banner (a link to the note, not the note)', () => {
    expect(failingCellIndex([BANNER, code('x')], 0)).toBe(0);
  });
});
