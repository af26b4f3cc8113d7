/**
 * A job's log in a main-area panel, followed (long polls of `log?offset&follow=1`)
 * until the job has ended and everything it wrote has been read.
 */
import { Widget } from '@lumino/widgets';

import { APIError, ILogChunk, requestAPI } from './api';

export class LogView extends Widget {
  private _offset = 0;
  private _pre: HTMLPreElement;
  private _status: HTMLDivElement;

  constructor(readonly jobId: string, name: string) {
    super();
    this.id = `clusterlab-log-${jobId}`;
    this.title.label = `Log: ${name}`;
    this.title.closable = true;
    this.addClass('jp-clusterlab-log');
    this._status = document.createElement('div');
    this._status.className = 'jp-clusterlab-log-status';
    this._pre = document.createElement('pre');
    this.node.append(this._status, this._pre);
    void this._follow();
  }

  private async _follow(): Promise<void> {
    let failures = 0;
    while (!this.isDisposed) {
      try {
        const chunk = await requestAPI<ILogChunk>(
          `jobs/${encodeURIComponent(this.jobId)}/log?offset=${this._offset}&follow=1`
        );
        failures = 0;
        if (this.isDisposed) {
          return;
        }
        const atBottom = this.node.scrollTop + this.node.clientHeight >= this.node.scrollHeight - 20;
        this._pre.append(chunk.text);
        this._offset = chunk.offset;
        if (atBottom) {
          this.node.scrollTop = this.node.scrollHeight;
        }
        this._status.textContent = chunk.done ? `Job ${chunk.status}.` : `Job ${chunk.status}: following…`;
        this._status.dataset.status = chunk.status;
        if (chunk.done && !chunk.text) {
          return;
        }
      } catch (error) {
        failures += 1;
        this._status.textContent = `Cannot read the log: ${(error as APIError).message}`;
        if ((error as APIError).status === 404 || failures > 5) {
          return;
        }
        await new Promise(resolve => setTimeout(resolve, 2000 * failures));
      }
    }
  }
}
