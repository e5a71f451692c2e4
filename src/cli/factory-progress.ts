// What `tern factory init` shows while it works (see common/progress.ts for
// how: a live line on a terminal, plain step lines elsewhere): the template
// lookup (which includes waiting for another process's build), then each
// phase of a build as the VM factory reports it, counted 1/4 to 4/4.
import { Progress, type ProgressStream } from '../common/progress';
import { TEMPLATE_BUILD_PHASES, type TemplateBuildPhase } from '../shim/templates/factory';

const PHASE_LABELS: Record<TemplateBuildPhase, string> = {
  boot: 'booting the template VM',
  agent: 'waiting for the guest agent',
  save: 'saving the VM state',
  stop: 'stopping the template VM',
};

export const LOOKUP_LABEL = 'looking up the template';

/** The progress of one init on stream (none without a stream). */
export function initProgress(stream: ProgressStream | undefined, env: Readonly<Record<string, string | undefined>> = process.env): Progress {
  return new Progress({ stream, env, prefix: 'tern factory init: ' });
}

/** The VM factory's phase callback, turning each phase into a counted step of progress. */
export function templatePhaseSteps(progress: Progress): (phase: TemplateBuildPhase) => void {
  return (phase) => progress.begin(PHASE_LABELS[phase], { current: TEMPLATE_BUILD_PHASES.indexOf(phase) + 1, total: TEMPLATE_BUILD_PHASES.length });
}
