// A container's teardown, kept as it is built: each resource createContainer
// acquires pushes how to release it, and the same stack undoes a failed
// create and removes the container later, newest first. A step is dropped
// only once it has succeeded, so a removal that failed can be retried from
// where it stopped.
export type UndoStep = { what: string; undo: () => Promise<void> };

export class UndoStack {
  private readonly steps: UndoStep[] = [];

  push(what: string, undo: () => Promise<void>): void {
    this.steps.push({ what, undo });
  }

  get pending(): readonly string[] {
    return this.steps.map((s) => s.what);
  }

  /** Undoes every step, newest first; stops at the first that fails and throws its error (a retry resumes there). */
  async unwind(): Promise<void> {
    for (let step = this.steps.at(-1); step; step = this.steps.at(-1)) {
      await step.undo();
      this.steps.pop();
    }
  }

  /** Undoes every step, newest first, going on past failures (each reported to `failed`); the stack ends empty. */
  async unwindAll(failed: (what: string, err: unknown) => void): Promise<void> {
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      await step.undo().catch((err: unknown) => failed(step!.what, err));
    }
  }
}
