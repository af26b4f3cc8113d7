/**
 * A dialog that sends its form: the accept button submits, and the dialog closes only once the server
 * said yes (a refusal stays on screen, next to the field it names). The datasets' and AI Studio's
 * dialogs are both one.
 */
import { Dialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

/** A form a dialog sends: busy while its request is out; `submit()` says whether the server took it. */
export interface ISendingForm extends Widget {
  readonly busy: boolean;
  submit(): Promise<boolean>;
}

export class SendingDialog<T> extends Dialog<T> {
  constructor(
    private form: ISendingForm,
    options: Omit<Partial<Dialog.IOptions<T>>, 'body'>
  ) {
    super({ ...options, body: form as Dialog.Body<T> });
  }

  resolve(index?: number): void {
    if (index === 0) {
      super.resolve(0);
      return;
    }
    if (this.form.busy) {
      return;
    }
    void this.form.submit().then(sent => sent && super.resolve(1));
  }
}
