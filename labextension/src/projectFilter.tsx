/**
 * The project filter the Jobs, Experiments and Datasets panels share the look
 * of: a select of the user's projects ("All projects" first) and, once one is
 * chosen, a button that opens its page. Hidden on a server without projects.
 * And the forms' project box: a name typed or chosen from the user's projects.
 */
import { launchIcon, UseSignal } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import * as React from 'react';

import { ActionButton, CommandIDs } from './jobsPanel';
import { ProjectsModel } from './projectsModel';

export function ProjectFilter(props: {
  /** names the select's id: "jobs", "experiments", "datasets" */
  panel: string;
  projects: ProjectsModel;
  value: string | null;
  onChange: (project: string | null) => void;
  commands: CommandRegistry;
}): JSX.Element {
  const { panel, projects, value, onChange, commands } = props;
  const id = `clusterlab-${panel}-project`;
  return (
    <UseSignal signal={projects.changed}>
      {() => {
        if (!projects.available) {
          return null;
        }
        const names = projects.names;
        // one chosen elsewhere (a link to a project page) that the list has not caught up with
        const options = value && !names.includes(value) ? [...names, value] : names;
        return (
          <div className="jp-clusterlab-project-filter" data-panel={panel}>
            <label htmlFor={id}>Project</label>
            <select
              id={id}
              className="jp-mod-styled"
              value={value ?? ''}
              onFocus={() => void projects.refresh()}
              onChange={e => onChange(e.target.value || null)}
            >
              <option value="">All projects</option>
              {options.map(name => (
                <option key={name} value={name}>
                  {name}
                </option>
              ))}
            </select>
            {value && (
              <ActionButton
                action="open-project"
                label={`Open the page of project ${value}`}
                icon={launchIcon}
                onClick={() => void commands.execute(CommandIDs.openProject, { name: value })}
              />
            )}
          </div>
        );
      }}
    </UseSignal>
  );
}

/** A project's name, typed (a new name makes a new project) or chosen from ``names``; the rest goes to the input. */
export function ProjectInput(props: React.InputHTMLAttributes<HTMLInputElement> & { id: string; names: string[] }): JSX.Element {
  const { names, ...input } = props;
  const list = `${props.id}s`;
  return (
    <>
      <input list={list} {...input} />
      <datalist id={list}>
        {names.map(name => (
          <option key={name} value={name} />
        ))}
      </datalist>
    </>
  );
}
