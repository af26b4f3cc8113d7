/**
 * A job's inputs as its card and the project page list them: "shapes:2"
 * (with a short digest) links to that version in the Datasets panel, "job
 * train_1" to the job it came from. The mount name (`as`) shows when it differs
 * from what it names.
 */
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { IInput } from './api';
import { formatBytes, formatFiles, shortDigest } from './format';
import { breakable, CommandIDs } from './jobsPanel';

export function inputLabel(input: IInput): string {
  return input.dataset !== undefined ? `${input.dataset}:${input.version}` : `job ${input.job_name ?? input.job}`;
}

function inputTitle(input: IInput): string {
  const what = input.dataset !== undefined
    ? `dataset ${input.dataset} version ${input.version}${input.shared ? ' (shared)' : ''}`
    : `the output of job ${input.job_name ?? ''} (${input.job})`;
  return `${what}\n${formatFiles(input.files)}, ${formatBytes(input.bytes)}\n${input.digest}\nmounted at input/${input.as}`;
}

export function InputsList(props: {
  inputs: IInput[] | undefined;
  commands: CommandRegistry;
  /** where a job's link goes (default: its card in the Jobs panel) */
  onJob?: (id: string) => void;
  className?: string;
}): JSX.Element | null {
  const { inputs, commands, onJob } = props;
  if (!inputs?.length) {
    return null;
  }
  const showJob = onJob ?? ((id: string) => void commands.execute(CommandIDs.showJob, { id }));
  return (
    <ul className={`jp-clusterlab-inputs ${props.className ?? ''}`} aria-label="Inputs">
      {inputs.map((input, i) => {
        const label = inputLabel(input);
        const named = input.dataset ?? input.job_name;
        return (
          <li key={i} className="jp-clusterlab-input" data-as={input.as} data-input={input.dataset !== undefined ? label : `job:${input.job}`}>
            <span className="jp-clusterlab-input-kind">in:</span>{' '}
            {input.as !== named && <span className="jp-clusterlab-input-as">{breakable(input.as)} ← </span>}
            <button
              className="jp-clusterlab-link"
              data-action={input.dataset !== undefined ? 'open-dataset' : 'show-job'}
              title={inputTitle(input)}
              onClick={() =>
                input.dataset !== undefined
                  ? void commands.execute(CommandIDs.openDataset, { name: input.dataset, version: input.version ?? null })
                  : showJob(input.job!)
              }
            >
              {breakable(label)}
            </button>{' '}
            <code className="jp-clusterlab-digest" title={input.digest}>
              {shortDigest(input.digest)}
            </code>
            {input.shared && <span className="jp-clusterlab-badge"> shared</span>}
          </li>
        );
      })}
    </ul>
  );
}
