/** Status-bar item: the GPUs granted to this server and their use (nvidia-smi when present). */
import { ReactWidget } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';
import * as React from 'react';

import { IGPUStatus, requestAPI } from './api';

export class GPUStatusItem extends ReactWidget {
  private _status: IGPUStatus | null = null;
  private _poll: Poll;

  constructor() {
    super();
    this.addClass('jp-clusterlab-gpu-status');
    this._poll = new Poll({
      factory: async () => {
        this._status = await requestAPI<IGPUStatus>('gpus');
        this.update();
      },
      frequency: { interval: 15 * 1000, backoff: true, max: 120 * 1000 },
      standby: 'when-hidden',
      name: 'clusterlab:gpus'
    });
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  render(): JSX.Element {
    const status = this._status;
    if (!status) {
      return <span>GPU: …</span>;
    }
    const text =
      status.granted.length === 0
        ? 'no GPU granted'
        : status.gpus.some(g => g.utilization_percent !== undefined)
          ? status.gpus.map(g => `GPU ${g.index} ${g.utilization_percent}%`).join(' · ')
          : `GPU ${status.granted.join(', ')}`;
    return (
      <span title={status.message} data-granted={status.granted.join(',')}>
        {text}
      </span>
    );
  }
}
