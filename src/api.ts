/**
 * Calls to the server's /eb/ handlers (eb_labextension/handlers.py), with JupyterLab's own
 * server connection: its token and XSRF cookie, never a broker's credentials.
 */

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An error the server explained: its `message` is meant for the user. */
export class EBApiError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

export async function requestAPI<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'eb', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new EBApiError(`cannot reach the Jupyter server: ${error}`, 0);
  }
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  if (!response.ok) {
    const message = data?.message || data?.reason || `HTTP ${response.status}`;
    throw new EBApiError(message, response.status);
  }
  return data as T;
}

export function postAPI<T>(path: string, body: unknown): Promise<T> {
  return requestAPI<T>(path, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' }
  });
}
