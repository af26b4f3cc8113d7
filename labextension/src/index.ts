/**
 * ClusterLab in JupyterLab: the "Accelerated AI" launcher section (a tile per
 * template), template forms (and their search mode), the Jobs sidebar with
 * live logs, metrics and TensorBoard, the Experiments sidebar and each
 * experiment's view, the Datasets sidebar ("Make a dataset from this folder" in
 * the file browser), project pages, the AI Studio page (a labelling's chain to
 * a published model, with Label Studio in a panel), and the GPU status-bar
 * item. Everything talks to the server extension's REST API (api.ts); each
 * user action is a command.
 */
import { ILabShell, ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, InputDialog, MainAreaWidget, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { FileBrowser, FilterFileBrowserModel, IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { folderIcon } from '@jupyterlab/ui-components';

import { IJob, ILabelling, ITemplate, postJSON, requestAPI, requestText, studioAPI } from './api';
import { makeDataset } from './datasetDialog';
import { DatasetsModel } from './datasetsModel';
import { DatasetsPanel } from './datasetsPanel';
import { formatBytes, formatFiles } from './format';
import { ExperimentsModel } from './experimentsModel';
import { ExperimentsPanel } from './experimentsPanel';
import { ExperimentView } from './experimentView';
import { GPUStatusItem } from './gpuStatus';
import { datasetsIcon, iconFor, projectIcon, studioIcon } from './icons';
import { CommandIDs, JobsPanel } from './jobsPanel';
import { JobsModel } from './jobsModel';
import { labellingPanel, labellingPanelId } from './labellingPanel';
import { LogView } from './logView';
import { PickerSource } from './pickers';
import { ProjectsModel } from './projectsModel';
import { ProjectView } from './projectView';
import { StudioModel } from './studioModel';
import { newLabelling, StudioCommandIDs, StudioView } from './studioPage';
import { openTensorBoard } from './tensorboard';
import { formOptions, TemplateFormWidget } from './templateForm';

const PLUGIN_ID = '@clusterlab/labextension:plugin';
const CATEGORY = 'Accelerated AI';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Accelerated AI templates, their forms, the Jobs panel and the embedded TensorBoard.',
  autoStart: true,
  requires: [ILabShell, IDocumentManager],
  optional: [ILauncher, ICommandPalette, ISettingRegistry, ILayoutRestorer, IStatusBar, IFileBrowserFactory],
  activate: async (
    app: JupyterFrontEnd,
    shell: ILabShell,
    docManager: IDocumentManager,
    launcher: ILauncher | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    browsers: IFileBrowserFactory | null
  ) => {
    const { commands } = app;
    const templates = new Map<string, ITemplate>(); // filled below, for the launcher and the job cards
    const model = new JobsModel(templates);
    const experiments = new ExperimentsModel();
    const projects = new ProjectsModel();
    const datasets = new DatasetsModel();
    const pickers = new PickerSource();
    const panel = new JobsPanel(model, commands, experiments, projects);
    shell.add(panel, 'left', { rank: 600 });
    restorer?.add(panel, panel.id);
    const experimentsPanel = new ExperimentsPanel(experiments, templates, commands, projects);
    shell.add(experimentsPanel, 'left', { rank: 601 });
    restorer?.add(experimentsPanel, experimentsPanel.id);
    const datasetsPanel = new DatasetsPanel(datasets, projects, commands);
    shell.add(datasetsPanel, 'left', { rank: 602 });
    restorer?.add(datasetsPanel, datasetsPanel.id);
    let interval = 5; // seconds, the settings' refreshInterval: a project page asks at it too
    const projectViews = () => Array.from(shell.widgets('main')).filter((w): w is ProjectView => w instanceof ProjectView);
    let studio: StudioView | null = null; // the AI Studio page, while it is open

    if (settingRegistry) {
      try {
        const settings = await settingRegistry.load(PLUGIN_ID);
        const apply = () => {
          const seconds = settings.get('refreshInterval').composite as number;
          interval = seconds;
          model.interval = seconds;
          experiments.interval = seconds;
          datasets.interval = seconds;
          projectViews().forEach(view => (view.interval = seconds));
          if (studio) {
            studio.context.model.interval = seconds;
          }
        };
        apply();
        settings.changed.connect(apply);
      } catch (error) {
        console.warn('ClusterLab: settings could not be loaded; refreshing every 5 s', error);
      }
    }

    const jobById = (id: string): IJob | undefined => model.jobs.find(job => job.id === id);
    const addToMain = (widget: MainAreaWidget | LogView | ExperimentView | ProjectView) => {
      shell.add(widget, 'main');
      shell.activateById(widget.id);
    };

    const openForm = async (templateId: string, rerun: IJob | null) => {
      try {
        const options = await formOptions(templateId, rerun, model.project);
        const content = new TemplateFormWidget({
          ...options,
          rerunOf: rerun?.id ?? null,
          pickers,
          projects,
          onSubmitted: job => {
            if (model.project && (job.project ?? 'default') !== model.project) {
              model.project = null; // else the panel it shows would not list the new job
            }
            void model.refresh();
            void projects.refresh();
            shell.activateById(panel.id);
          },
          onExperiment: experiment => {
            if (experiments.project && (experiment.project ?? 'default') !== experiments.project) {
              experiments.project = null;
            }
            void experiments.refresh();
            void model.refresh();
            void projects.refresh();
            shell.activateById(experimentsPanel.id);
          }
        });
        const widget = new MainAreaWidget({ content });
        widget.id = `clusterlab-form-${templateId}-${Date.now()}`;
        widget.title.label = rerun ? `Rerun: ${rerun.name}` : options.template.name;
        widget.title.icon = iconFor(options.template);
        widget.title.closable = true;
        addToMain(widget);
      } catch (error) {
        void showErrorMessage('ClusterLab: cannot open the form', String((error as Error).message ?? error));
      }
    };

    commands.addCommand(CommandIDs.openTemplate, {
      label: args => templates.get(args.id as string)?.name ?? 'Open a ClusterLab template',
      caption: args => templates.get(args.id as string)?.description ?? '',
      icon: args => iconFor(templates.get(args.id as string)),
      execute: args => openForm(args.id as string, null)
    });

    commands.addCommand(CommandIDs.openJobs, {
      label: 'Jobs',
      caption: 'Show the ClusterLab jobs panel',
      execute: () => {
        shell.activateById(panel.id);
        void model.refresh();
      }
    });

    commands.addCommand(CommandIDs.openLog, {
      label: 'Show the job log',
      execute: args => {
        const id = args.id as string;
        const existing = Array.from(shell.widgets('main')).find(w => w.id === `clusterlab-log-${id}`);
        if (existing) {
          shell.activateById(existing.id);
          return;
        }
        addToMain(new LogView(id, jobById(id)?.name ?? id));
      }
    });

    commands.addCommand(CommandIDs.cancel, {
      label: 'Cancel the job',
      execute: async args => {
        try {
          await model.cancel(args.id as string);
        } catch (error) {
          void showErrorMessage('ClusterLab: cannot cancel', String((error as Error).message ?? error));
        }
      }
    });

    commands.addCommand(CommandIDs.rerun, {
      label: 'Run the job again with changed parameters',
      execute: async args => {
        const job = jobById(args.id as string);
        if (job) {
          await openForm(job.template, job);
        }
      }
    });

    // A job's output opens in a file browser of its own, in the main area, kept
    // to that folder: the main file browser (which sets where new launchers,
    // notebooks and terminals start) stays where the user left it. It is not
    // made by the file browser factory, whose tracker would make it "current".
    commands.addCommand(CommandIDs.openOutput, {
      label: 'Open the job output folder',
      execute: async args => {
        const job = jobById(args.id as string);
        if (!job?.output_path) {
          void showErrorMessage(
            'ClusterLab',
            `The output of ${job?.name ?? args.id} is outside this server's file browser: ${job?.folder}/output`
          );
          return;
        }
        const id = `clusterlab-output-${job.id}`;
        if (!Array.from(shell.widgets('main')).some(w => w.id === id)) {
          const model = new FilterFileBrowserModel({ manager: docManager, root: job.output_path, refreshInterval: 5000 });
          const browser = new FileBrowser({ id, model, restore: false });
          browser.addClass('jp-clusterlab-output');
          browser.title.label = `Output: ${job.name}`;
          browser.title.caption = `${job.name}: ${job.output_path}`;
          browser.title.icon = folderIcon;
          browser.title.closable = true;
          const where = document.createElement('div');
          where.className = 'jp-clusterlab-output-where';
          where.textContent = `Output of job ${job.name}: ${job.output_path} (in your workspace)`;
          browser.node.insertBefore(where, browser.node.firstChild);
          shell.add(browser, 'main');
          await model.cd(`/${job.output_path}`);
        }
        shell.activateById(id);
      }
    });

    commands.addCommand(CommandIDs.openTensorBoard, {
      label: 'Open TensorBoard',
      execute: async args => {
        const ids = (args.jobs as string[]) ?? [];
        try {
          // an experiment's trials go by the experiment's name, not one tab title of twenty job names
          const names = args.label ? [args.label as string] : ids.map(id => jobById(id)?.name ?? id);
          addToMain(await openTensorBoard(ids, names));
        } catch (error) {
          void showErrorMessage('ClusterLab: cannot open TensorBoard', String((error as Error).message ?? error));
        }
      }
    });

    // ----- experiments -------------------------------------------------------------
    const experimentName = (id: string) => experiments.byId(id)?.name ?? id;
    const experimentViews = (id: string) =>
      Array.from(shell.widgets('main')).filter(w => w instanceof ExperimentView && w.experimentId === id);

    commands.addCommand(CommandIDs.openExperiments, {
      label: 'Experiments',
      caption: 'Show the ClusterLab experiments panel',
      execute: () => {
        shell.activateById(experimentsPanel.id);
        void experiments.refresh();
      }
    });

    commands.addCommand(CommandIDs.openExperiment, {
      label: 'Open the experiment',
      execute: args => {
        const id = args.id as string;
        const existing = experimentViews(id)[0];
        if (existing) {
          shell.activateById(existing.id);
          return;
        }
        addToMain(new ExperimentView(id, experiments, model.catalog, commands));
      }
    });

    commands.addCommand(CommandIDs.cancelExperiment, {
      label: 'Cancel the experiment',
      execute: async args => {
        try {
          await experiments.cancel(args.id as string);
          void model.refresh();
        } catch (error) {
          void showErrorMessage('ClusterLab: cannot cancel the experiment', String((error as Error).message ?? error));
        }
      }
    });

    commands.addCommand(CommandIDs.deleteExperiment, {
      label: 'Delete the experiment',
      execute: async args => {
        const id = args.id as string;
        const name = experimentName(id);
        const trials = experiments.byId(id)?.counts.trials ?? 0;
        const answer = await showDialog({
          title: `Delete experiment ${name}?`,
          body: `Its ${trials} trial${trials === 1 ? '' : 's'} go too: their job records, logs and output folders (models included).`,
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
        });
        if (!answer.button.accept) {
          return;
        }
        try {
          await experiments.remove(id);
          experimentViews(id).forEach(w => w.close());
          void model.refresh();
        } catch (error) {
          void showErrorMessage('ClusterLab: cannot delete the experiment', String((error as Error).message ?? error));
        }
      }
    });

    commands.addCommand(CommandIDs.rerunBest, {
      label: 'Rerun the best trial with more epochs',
      execute: async args => {
        const id = args.id as string;
        const experiment = experiments.byId(id);
        const epochs = experiment?.epochs ?? experiment?.best?.epoch ?? 10;
        const answer = await InputDialog.getNumber({
          title: `Rerun the best trial of ${experimentName(id)}`,
          label: 'Epochs (its other parameters stay the best trial\'s)',
          value: Math.max(epochs * 3, 1)
        });
        if (!answer.button.accept || !(answer.value && answer.value >= 1)) {
          return;
        }
        try {
          const job = await postJSON<IJob>(`experiments/${encodeURIComponent(id)}/rerun-best`, {
            params: { epochs: Math.round(answer.value) }
          });
          await model.refresh();
          shell.activateById(panel.id);
          Notification.success(`Started job ${job.name} (${job.id}): the best trial with ${Math.round(answer.value)} epochs.`, {
            autoClose: 5000
          });
        } catch (error) {
          void showErrorMessage('ClusterLab: cannot rerun the best trial', String((error as Error).message ?? error));
        }
      }
    });

    commands.addCommand(CommandIDs.downloadTrials, {
      label: 'Download the trials as CSV',
      execute: async args => {
        const id = args.id as string;
        try {
          const text = await requestText(`experiments/${encodeURIComponent(id)}/trials.csv`);
          const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
          const link = document.createElement('a');
          link.href = url;
          link.download = `${experimentName(id)}-trials.csv`;
          document.body.appendChild(link);
          link.click();
          link.remove();
          setTimeout(() => URL.revokeObjectURL(url), 10_000);
        } catch (error) {
          void showErrorMessage('ClusterLab: cannot download the trials', String((error as Error).message ?? error));
        }
      }
    });

    // ----- datasets -----------------------------------------------------------------
    /** after React drew what a model's change asked for */
    const nextFrame = () => new Promise(resolve => requestAnimationFrame(() => setTimeout(resolve, 0)));

    commands.addCommand(CommandIDs.openDatasets, {
      label: 'Datasets',
      caption: 'Show the ClusterLab datasets panel',
      execute: () => {
        shell.activateById(datasetsPanel.id);
        void datasets.refresh();
      }
    });

    commands.addCommand(CommandIDs.openDataset, {
      label: 'Show the dataset',
      execute: async args => {
        const name = args.name as string;
        const version = (args.version as number | null | undefined) ?? null;
        shell.activateById(datasetsPanel.id);
        if (!datasets.byName(name)) {
          datasets.project = null; // a filter may hide it
          await datasets.reload();
        }
        if (!datasets.byName(name)) {
          void showErrorMessage('ClusterLab', `There is no dataset ${name} (any more).`);
          return;
        }
        if (datasets.selected?.name !== name || (version !== null && datasets.selected.version !== version)) {
          datasets.select(name, version);
        }
        await nextFrame();
        datasetsPanel.reveal(name);
      }
    });

    const selectedFolder = (): string | null => {
      const first = browsers?.tracker.currentWidget?.selectedItems().next();
      const item = first && !first.done ? first.value : undefined;
      return item?.type === 'directory' ? item.path : null;
    };

    commands.addCommand(CommandIDs.createDataset, {
      label: 'Make a dataset from this folder…',
      caption: 'Freeze the folder\'s files as a new version of a dataset, for jobs to read',
      icon: datasetsIcon,
      isVisible: args => typeof args.path === 'string' || selectedFolder() !== null,
      execute: async args => {
        const folder = typeof args.path === 'string' ? (args.path as string) : selectedFolder();
        if (folder === null) {
          return;
        }
        const version = await makeDataset(folder, datasets, projects);
        if (!version) {
          return;
        }
        Notification.success(
          `Made dataset ${version.name} version ${version.version}: ${formatFiles(version.files)}, ${formatBytes(version.bytes)}` +
            (version.new_bytes !== undefined ? ` (${formatBytes(version.new_bytes)} stored anew).` : '.'),
          { autoClose: 8000 }
        );
        if (datasets.project && datasets.project !== version.project) {
          datasets.project = null;
        }
        await datasets.reload();
        void pickers.refresh(true);
        await commands.execute(CommandIDs.openDataset, { name: version.name, version: version.version });
      }
    });
    // on folders of the file browsers (not a job's output folder: that is an input as job:<id> already)
    app.contextMenu.addItem({
      command: CommandIDs.createDataset,
      selector: '.jp-FileBrowser:not(.jp-clusterlab-output) .jp-DirListing-item[data-isdir="true"]',
      rank: 20
    });

    commands.addCommand(CommandIDs.deleteDatasetVersion, {
      label: 'Delete the dataset version',
      execute: async args => {
        const name = args.name as string;
        const version = args.version as number;
        const dataset = datasets.byName(name);
        const last = dataset?.versions.length === 1;
        const answer = await showDialog({
          title: `Delete ${name} version ${version}?`,
          body: last
            ? `It is the last version: the dataset ${name} goes. Jobs that ended keep their record of it; its number is not given again.`
            : `Jobs that ended keep their record of it; its number is not given again.`,
          buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
        });
        if (answer.button.accept && (await datasets.remove(name, version))) {
          void pickers.refresh(true);
          void projects.refresh();
        }
      }
    });

    // ----- jobs from links, and project pages --------------------------------------------
    commands.addCommand(CommandIDs.showJob, {
      label: 'Show the job in the Jobs panel',
      execute: async args => {
        const id = args.id as string;
        shell.activateById(panel.id);
        if (!jobById(id) && model.project) {
          model.project = null; // a filter hides it
        }
        if (!jobById(id)) {
          await model.reload();
        }
        await nextFrame();
        if (!panel.reveal(id)) {
          Notification.warning(`Job ${id} is not among the jobs listed.`, { autoClose: 5000 });
        }
      }
    });

    commands.addCommand(CommandIDs.openProject, {
      label: args => (args.name ? `Open project ${args.name}` : 'Open a project page…'),
      caption: 'A project\'s jobs with their inputs and who used their outputs, its datasets and experiments',
      icon: projectIcon,
      execute: async args => {
        let name = args.name as string | undefined;
        if (!name) {
          await projects.refresh().catch(() => undefined);
          const answer = await InputDialog.getItem({
            title: 'Open a project page',
            label: 'Project',
            items: projects.names.length ? projects.names : ['default'],
            current: model.project ?? 'default'
          });
          if (!answer.button.accept || !answer.value) {
            return;
          }
          name = answer.value;
        }
        const existing = projectViews().find(view => view.project === name);
        if (existing) {
          shell.activateById(existing.id);
          void existing.refresh();
          return;
        }
        addToMain(new ProjectView(name, model.catalog, commands, interval));
      }
    });

    // ----- the AI Studio, and a labelling's Label Studio panel -----------------------------
    commands.addCommand(StudioCommandIDs.openStudio, {
      label: 'Open AI Studio',
      caption: 'Label images, export them to a dataset, train a grid, validate, register and publish a model',
      icon: studioIcon,
      execute: () => {
        if (!studio) {
          const view = new StudioView({
            model: new StudioModel(interval),
            projects,
            commands,
            // a report reads as Markdown does, with its pictures, not as its source
            openFile: path => void docManager.openOrReveal(path, path.endsWith('.md') ? 'Markdown Preview' : undefined)
          });
          view.disposed.connect(() => {
            view.context.model.dispose();
            studio = null;
          });
          studio = view;
          shell.add(view, 'main');
        }
        shell.activateById(studio.id);
        void studio.context.model.refresh();
      }
    });

    // a folder of the file browser, labelled: the AI Studio page, and its "New labelling" dialog on that folder
    commands.addCommand(StudioCommandIDs.labelFolder, {
      label: 'Label the pictures in this folder…',
      caption: 'AI Studio: freeze the folder\'s pictures as a labelling, to label in Label Studio',
      icon: studioIcon,
      isVisible: args => typeof args.path === 'string' || selectedFolder() !== null,
      execute: async args => {
        const folder = typeof args.path === 'string' ? (args.path as string) : selectedFolder();
        if (folder === null) {
          return;
        }
        await commands.execute(StudioCommandIDs.openStudio);
        if (studio) {
          await newLabelling(studio.context, folder);
        }
      }
    });
    app.contextMenu.addItem({
      command: StudioCommandIDs.labelFolder,
      selector: '.jp-FileBrowser:not(.jp-clusterlab-output) .jp-DirListing-item[data-isdir="true"]',
      rank: 21
    });

    commands.addCommand(StudioCommandIDs.openLabelling, {
      label: 'Open the labelling in Label Studio',
      execute: async args => {
        const id = args.id as string;
        const existing = Array.from(shell.widgets('main')).find(w => w.id === labellingPanelId(id));
        if (existing) {
          shell.activateById(existing.id);
          return;
        }
        try {
          const labelling: ILabelling = studio?.context.model.byId(id)?.labelling ?? (await studioAPI.labelling(id));
          const opened = studio ? studio.context.model.openLabelling(id) : studioAPI.openLabelling(id);
          addToMain(labellingPanel(labelling, opened));
          await opened;
        } catch (error) {
          void showErrorMessage('ClusterLab: cannot open the labelling', String((error as Error).message ?? error));
        }
      }
    });

    palette?.addItem({ command: StudioCommandIDs.openStudio, category: 'ClusterLab' });
    palette?.addItem({ command: CommandIDs.openJobs, category: 'ClusterLab' });
    palette?.addItem({ command: CommandIDs.openExperiments, category: 'ClusterLab' });
    palette?.addItem({ command: CommandIDs.openDatasets, category: 'ClusterLab' });
    palette?.addItem({ command: CommandIDs.openProject, category: 'ClusterLab' });

    if (statusBar) {
      statusBar.registerStatusItem('clusterlab:gpu-status', {
        item: new GPUStatusItem(),
        align: 'left',
        rank: 10
      });
    }

    try {
      const answer = await requestAPI<{ templates: ITemplate[] }>('templates');
      answer.templates.forEach((template, rank) => {
        templates.set(template.id, template);
        launcher?.add({ command: CommandIDs.openTemplate, args: { id: template.id }, category: CATEGORY, rank });
        palette?.addItem({ command: CommandIDs.openTemplate, args: { id: template.id }, category: 'ClusterLab templates' });
      });
    } catch (error) {
      console.error('ClusterLab: the templates could not be loaded', error);
    }
    // after the templates' tiles, which a launcher shows first
    launcher?.add({ command: StudioCommandIDs.openStudio, category: CATEGORY, rank: 1000 });
  }
};

export default plugin;
