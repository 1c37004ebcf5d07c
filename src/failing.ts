/**
 * Which cell of an output notebook failed. The SDK reports the failing cell's index in the
 * notebook the user submitted; papermill's output has more cells (the injected parameters,
 * a red banner at the top and a red note just above the failing cell), so the sidebar looks
 * for papermill's note and shows the code cell right after it. Without the note (a notebook
 * that was not run by papermill) the reported index is used as it is.
 */

/** The little the search needs of a cell. */
export interface ICellInfo {
  tags: readonly string[];
  source: string;
}

/** The tag papermill gives its banner and its note above the failing cell. */
export const PAPERMILL_ERROR_TAG = 'papermill-error-cell-tag';

/** Index of the cell after papermill's note (`id="papermill-error-cell"`), else `fallback`. */
export function failingCellIndex(cells: readonly ICellInfo[], fallback?: number): number | undefined {
  for (let i = 0; i + 1 < cells.length; i++) {
    const cell = cells[i];
    if (cell.tags.includes(PAPERMILL_ERROR_TAG) && cell.source.includes('id="papermill-error-cell"')) {
      return i + 1;
    }
  }
  return fallback;
}
