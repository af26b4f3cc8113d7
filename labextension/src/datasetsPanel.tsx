/**
 * The left-sidebar Datasets panel: the user's datasets and the site's (marked
 * "shared"), each with its versions (size, files, who made it and when). A
 * selected version shows its description, digest and source folder, a preview
 * (a few of its images, or the first rows of its table), the jobs that read it,
 * and, for one's own, delete (a refusal says why, in the card). A project
 * filter on top, as in the Jobs panel. Cards read at the sidebar's default
 * width: names wrap, the preview's images shrink, a table scrolls sideways.
 */
import { Clipboard } from '@jupyterlab/apputils';
import { copyIcon, ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { IDataset, IDatasetVersion } from './api';
import { DatasetsModel, IVersionDetail } from './datasetsModel';
import { formatBytes, formatFiles, formatTime, shortDigest, shortPath } from './format';
import { datasetsIcon } from './icons';
import { ActionButton, breakable, CommandIDs, flash } from './jobsPanel';
import { ProjectFilter } from './projectFilter';
import { ProjectsModel } from './projectsModel';

/** A path may wrap after its slashes and underscores. */
export function breakablePath(path: string): React.ReactNode[] {
  return path.split(/(?<=[/_])/).flatMap((part, i) => (i === 0 ? [part] : [<wbr key={i} />, part]));
}

/** "v2 · 12.3 MB · 2,000 files" */
export function versionSummary(version: IDatasetVersion): string {
  return `v${version.version} · ${formatBytes(version.bytes)} · ${formatFiles(version.files)}`;
}

function Preview(props: { detail: IVersionDetail }): JSX.Element | null {
  const { preview, images } = props.detail;
  if (!preview) {
    return <p className="jp-clusterlab-help">Loading the preview…</p>;
  }
  if (preview.images.length === 0 && !preview.table) {
    return <p className="jp-clusterlab-help">No image or table to preview.</p>;
  }
  return (
    <div className="jp-clusterlab-dataset-preview">
      {preview.images.length > 0 && (
        <ul className="jp-clusterlab-preview-images" aria-label="Some of its images">
          {preview.images.map(image => {
            const url = images.get(image.path);
            return (
              <li key={image.path} title={`${image.path} (${formatBytes(image.size)})`}>
                {url ? (
                  <img src={url} alt={image.path} data-path={image.path} />
                ) : (
                  <span className="jp-clusterlab-preview-missing">{image.path}</span>
                )}
              </li>
            );
          })}
        </ul>
      )}
      {preview.table && (
        <figure className="jp-clusterlab-preview-table">
          <figcaption>
            First rows of <code>{breakablePath(preview.table.path)}</code> ({preview.table.header.length} columns)
          </figcaption>
          <div className="jp-clusterlab-preview-table-wrap" tabIndex={0} role="region" aria-label={`First rows of ${preview.table.path}`}>
            <table>
              <thead>
                <tr>
                  {preview.table.header.map((cell, i) => (
                    <th key={i}>{cell}</th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {preview.table.rows.map((row, i) => (
                  <tr key={i}>
                    {row.map((cell, j) => (
                      <td key={j}>{cell}</td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </figure>
      )}
    </div>
  );
}

function VersionDetail(props: {
  dataset: IDataset;
  version: IDatasetVersion;
  detail: IVersionDetail;
  commands: CommandRegistry;
}): JSX.Element {
  const { dataset, detail, commands } = props;
  const version = detail.version ?? props.version;
  const ref = `${dataset.name}:${version.version}`;
  const usedBy = detail.version?.used_by;
  return (
    <div className="jp-clusterlab-version-detail" data-ref={ref}>
      {version.description && version.description !== dataset.description && (
        <p className="jp-clusterlab-dataset-description">{version.description}</p>
      )}
      <dl className="jp-clusterlab-version-facts">
        <dt>Use as</dt>
        <dd>
          <code>{ref}</code>
          <ActionButton
            action="copy-ref"
            label={`Copy "${ref}": a template's dataset parameter, or clusterlab submit --input`}
            icon={copyIcon}
            onClick={() => Clipboard.copyToSystem(ref)}
          />
        </dd>
        <dt>Digest</dt>
        <dd>
          <code title={version.digest}>{shortDigest(version.digest)}</code>
        </dd>
        {version.new_bytes !== undefined && version.new_bytes < version.bytes && (
          <>
            <dt>New</dt>
            <dd title="What this version stored; its other files are those of earlier versions, kept once">
              {version.new_bytes === 0
                ? 'nothing: its files are all in earlier versions'
                : `${formatBytes(version.new_bytes)}, the rest as in earlier versions`}
            </dd>
          </>
        )}
        {version.source && (
          <>
            <dt>From</dt>
            <dd className="jp-clusterlab-version-source" title={version.source}>
              {breakablePath(shortPath(version.source))}
            </dd>
          </>
        )}
      </dl>
      {detail.error && <div className="jp-clusterlab-error">{detail.error}</div>}
      <Preview detail={detail} />
      <div className="jp-clusterlab-used-by" data-used-by={usedBy?.length ?? ''}>
        {usedBy === undefined ? (
          <span className="jp-clusterlab-help">Which jobs used it…</span>
        ) : usedBy.length === 0 ? (
          <span className="jp-clusterlab-help">No job has used it yet.</span>
        ) : (
          <>
            <span className="jp-clusterlab-used-by-title">Used by</span>
            <ul>
              {usedBy.map(job => (
                <li key={`${job.id}-${job.as}`} data-job-id={job.id}>
                  <button
                    className="jp-clusterlab-link"
                    data-action="show-job"
                    title={`Show job ${job.name} (${job.id}) in the Jobs panel`}
                    onClick={() => void commands.execute(CommandIDs.showJob, { id: job.id })}
                  >
                    {breakable(job.name)}
                  </button>{' '}
                  <span className={`jp-clusterlab-status jp-mod-${job.status}`} data-status={job.status}>
                    {job.status}
                  </span>
                </li>
              ))}
            </ul>
          </>
        )}
      </div>
      {dataset.shared ? (
        <p className="jp-clusterlab-help">Shared by the site: read only.</p>
      ) : (
        <div className="jp-clusterlab-version-actions">
          <button
            className="jp-mod-styled jp-mod-warn jp-clusterlab-delete-version"
            data-action="delete-version"
            onClick={() => void commands.execute(CommandIDs.deleteDatasetVersion, { name: dataset.name, version: version.version })}
          >
            Delete version {version.version}…
          </button>
        </div>
      )}
      {detail.deleteError && (
        <div className="jp-clusterlab-error jp-clusterlab-delete-error" role="alert">
          Not deleted: {detail.deleteError}
        </div>
      )}
    </div>
  );
}

function DatasetCard(props: { dataset: IDataset; model: DatasetsModel; commands: CommandRegistry }): JSX.Element {
  const { dataset, model, commands } = props;
  const selected = model.selected?.name === dataset.name ? model.selected.version : null;
  const headId = `clusterlab-dataset-${dataset.shared ? 'site' : 'own'}-${dataset.name}`;
  return (
    <li
      className={`jp-clusterlab-dataset${dataset.shared ? ' jp-mod-shared' : ''}`}
      data-dataset={dataset.name}
      data-shared={dataset.shared}
      aria-labelledby={headId}
    >
      <div className="jp-clusterlab-job-head">
        <span className="jp-clusterlab-job-name" id={headId}>
          {breakable(dataset.name)}
        </span>
        {dataset.shared && (
          <span className="jp-clusterlab-badge jp-clusterlab-shared" title="The site's: every user can read it, nobody can change it">
            shared
          </span>
        )}
      </div>
      <div className="jp-clusterlab-job-meta">
        {dataset.versions.length} version{dataset.versions.length === 1 ? '' : 's'}
        {dataset.project && dataset.project !== 'default' ? ` · project ${dataset.project}` : ''}
      </div>
      {dataset.description && <p className="jp-clusterlab-dataset-description">{dataset.description}</p>}
      <ul className="jp-clusterlab-versions">
        {dataset.versions.map(version => {
          const open = selected === version.version;
          return (
            <li
              key={version.version}
              className={`jp-clusterlab-version${open ? ' jp-mod-selected' : ''}`}
              data-version={version.version}
            >
              <button
                className="jp-clusterlab-version-button"
                aria-expanded={open}
                title={open ? 'Hide the details' : 'Show its preview, the jobs that used it, and delete'}
                onClick={() => model.select(dataset.name, version.version, true)}
              >
                <span className="jp-clusterlab-version-summary">{versionSummary(version)}</span>
                <span className="jp-clusterlab-version-who">
                  {version.creator} · {formatTime(version.created)}
                  {version.version === dataset.latest ? ' · latest' : ''}
                </span>
              </button>
              {open && model.detail && (
                <VersionDetail dataset={dataset} version={version} detail={model.detail} commands={commands} />
              )}
            </li>
          );
        })}
      </ul>
    </li>
  );
}

function DatasetsList(props: { model: DatasetsModel; projects: ProjectsModel; commands: CommandRegistry }): JSX.Element {
  const { model, projects, commands } = props;
  return (
    <UseSignal signal={model.changed}>
      {() => (
        <div className="jp-clusterlab-datasets">
          <div className="jp-clusterlab-jobs-toolbar">
            <h2>Datasets</h2>
            <button className="jp-mod-styled" data-action="refresh" onClick={() => void model.refresh()}>
              Refresh
            </button>
          </div>
          <ProjectFilter
            panel="datasets"
            projects={projects}
            value={model.project}
            onChange={project => (model.project = project)}
            commands={commands}
          />
          {model.error && <div className="jp-clusterlab-error">{model.error}</div>}
          {model.loaded && model.datasets.length === 0 && !model.error && (
            <p className="jp-clusterlab-empty">
              {model.project ? `No datasets in project ${model.project}. ` : 'No datasets yet. '}
              Make one from a folder: right-click it in the file browser, "Make a dataset from this folder".
            </p>
          )}
          <ul className="jp-clusterlab-job-list jp-clusterlab-dataset-list">
            {model.datasets.map(dataset => (
              <DatasetCard key={`${dataset.shared}-${dataset.name}`} dataset={dataset} model={model} commands={commands} />
            ))}
          </ul>
        </div>
      )}
    </UseSignal>
  );
}

export class DatasetsPanel extends ReactWidget {
  constructor(
    private model: DatasetsModel,
    private projects: ProjectsModel,
    private commands: CommandRegistry
  ) {
    super();
    this.id = 'clusterlab-datasets';
    this.title.icon = datasetsIcon;
    this.title.caption = 'ClusterLab datasets';
    this.addClass('jp-clusterlab-datasets-panel');
  }

  /** Bring a dataset's selected version into view and mark it a moment. */
  reveal(name: string): boolean {
    const node = this.node.querySelector<HTMLElement>(
      `.jp-clusterlab-dataset[data-dataset="${CSS.escape(name)}"] .jp-clusterlab-version.jp-mod-selected`
    ) ?? this.node.querySelector<HTMLElement>(`.jp-clusterlab-dataset[data-dataset="${CSS.escape(name)}"]`);
    if (!node) {
      return false;
    }
    flash(node);
    return true;
  }

  render(): JSX.Element {
    return <DatasetsList model={this.model} projects={this.projects} commands={this.commands} />;
  }
}
