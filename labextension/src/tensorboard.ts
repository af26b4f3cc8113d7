/**
 * The embedded TensorBoard: the server starts (or reuses) the user's one
 * TensorBoard over the chosen jobs and answers its URL behind the user's own
 * server (jupyter-server-proxy); it is shown here in an IFrame panel.
 */
import { IFrame, MainAreaWidget } from '@jupyterlab/apputils';

import { ITensorBoardStatus, postJSON } from './api';

export async function openTensorBoard(jobs: string[], names: string[]): Promise<MainAreaWidget<IFrame>> {
  const status = await postJSON<ITensorBoardStatus>('tensorboard', { jobs });
  // same origin: the proxy needs the server's cookie; scripts: TensorBoard is an app
  const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-same-origin', 'allow-popups', 'allow-downloads'] });
  frame.url = status.url ?? '';
  frame.addClass('jp-clusterlab-tensorboard');
  const widget = new MainAreaWidget({ content: frame });
  widget.id = `clusterlab-tensorboard-${Date.now()}`;
  widget.title.label = `TensorBoard: ${names.join(', ') || 'all jobs'}`;
  widget.title.closable = true;
  return widget;
}
