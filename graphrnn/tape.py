"""The tape of a recorded forward pass: BPTT from any output and final-state gradients."""

from __future__ import annotations

import numpy as np

from graphrnn import checks, config
from graphrnn.errors import DataError
from graphrnn.executor import final_rows
from graphrnn.lengths import valid_mask


class Tape:
    """What ``model.forward(..., record=True)`` keeps for a backward pass: the Run of that call,
    its buffers held by this tape alone until it is dropped (then the Run goes back to the
    model for the next recorded call of the same shapes).

    :meth:`backward` may be called any number of times; each call is independent of the others.
    """

    def __init__(self, model, run, state: dict, input_grads: bool, leased: bool = False,
                 layout: str = "time"):
        self.model, self.run, self.state = model, run, dict(state)
        self.layout = layout  # of the output gradients taken and input gradients returned
        self.input_grads = input_grads
        self._leased = leased  # whether the Run goes back to the model when the tape is dropped

    def __del__(self):
        self.release()

    def release(self) -> None:
        """Give the Run back to the model now (the tape cannot be used afterwards)."""
        leased, self._leased = getattr(self, "_leased", False), False
        if leased and self.run is not None:
            self.model._return_tape_run(self.run)
        self.run = None

    @property
    def final_state_keys(self) -> list[str]:
        """The keys a final-state gradient may have (those of the returned final state)."""
        return [key for key, _, _ in self.model.net.boundaries]

    def backward(self, output_grads: dict, state_grads: dict | None = None) -> dict:
        """Backpropagate through time from gradients of the outputs and of the final state.

        Parameters
        ----------
        output_grads : dict
            Output name -> gradient ``(T, B, size)`` of the recorded call's output; missing
            outputs (or None) count as zero.
        state_grads : dict, optional
            Final-state key -> gradient ``(B, size)``; missing keys count as zero.

        Returns
        -------
        dict
            Every key of ``params``; ``input:NAME`` for every input (None for token inputs,
            and where the forward pass was recorded with ``input_grads=False``);
            ``state:KEY`` for every key of the passed ``state``.
        """
        if self.run is None:
            raise DataError("this tape was released: record another forward pass")
        net, run, b = self.model.net, self.run, self.model.backend
        output_grads = {k: v for k, v in (output_grads or {}).items() if v is not None}
        state_grads = {k: v for k, v in (state_grads or {}).items() if v is not None}
        checks.check_names("output gradient (an output)", output_grads, net.outputs,
                           required=False)
        checks.check_names("state gradient (a final-state key)", state_grads,
                           self.final_state_keys, required=False)
        seeds = []
        plan = run.lengths_plan
        valid = None if plan is None else valid_mask(plan.lengths, run.steps)[..., None]
        for name, g in output_grads.items():
            g = np.asarray(g).swapaxes(0, 1) if self.layout == "batch" else g
            checks.check_array("output gradient", name, g, (run.steps, run.batch, net.size(name)))
            seeds.append((name, 0, run.steps, g if valid is None else g * valid))
        boundaries = {key: (name, k) for key, name, k in net.boundaries} if state_grads else {}
        rows = np.arange(run.batch) if state_grads and plan is not None else None
        for key, g in state_grads.items():
            name, k = boundaries[key]
            checks.check_array("state gradient", key, g, (run.batch, net.size(name)))
            if plan is not None and k > 0:  # each sequence's own step lengths[b] - k
                seeds.append((name, plan.lengths - k, rows, g))
            else:
                seeds.append((name, *final_rows(run.steps, k), g[None]))
        run.zero_grads()
        for name, lo, hi, g in seeds:
            g = b.asarray(g, self.model.dtype)
            if isinstance(lo, np.ndarray):
                full = run.rows(name, -run.pads[name], run.steps, grad=True)
                full[b.asarray(lo + run.pads[name], np.int64), b.asarray(hi, np.int64)] += g
            else:
                run.rows(name, lo, hi, grad=True)[...] += g
        return self._backward(inputs=True)

    def _backward(self, inputs: bool) -> dict:
        """BPTT from the gradients already seeded (after :meth:`Run.zero_grads`): the
        gradients by key, with ``input:NAME`` keys where ``inputs``."""
        run, model = self.run, self.model
        run.param_grads = {}
        with config.timed(1, "backward"):
            run.backward()
        grads = model._param_grads(run, self.state)
        if inputs:
            for name in model.net.inputs:
                g = (model.backend.export(run.rows(name, 0, run.steps, grad=True))
                     if self.input_grads and name not in model.net.tokens else None)
                if g is not None and self.layout == "batch":
                    g = g.swapaxes(0, 1)
                grads[f"input:{name}"] = g
            for key in self.state:
                grads.setdefault(f"state:{key}", None)
        return grads


class TrainingTape:
    """The tape of a call with training-time noise: the recorded call ran the training network
    (masks as extra inputs, renamed parameters), and this tape speaks the spec's names
    (``model``: the spec's model, whose call recorded it; ``state``: the given initial state,
    as :attr:`Tape.state`)."""

    def __init__(self, model, tape: Tape, outputs: dict, spec_grads):
        self.model, self.tape, self.outputs, self.spec_grads = model, tape, outputs, spec_grads
        self.state = tape.state

    @property
    def final_state_keys(self) -> list[str]:
        """As :attr:`Tape.final_state_keys`."""
        return self.tape.final_state_keys

    def release(self) -> None:
        """Give the recorded Run back now (the tape cannot be used afterwards)."""
        self.tape.release()

    def backward(self, output_grads: dict, state_grads: dict | None = None) -> dict:
        """As :meth:`Tape.backward`, with the spec's output and parameter names."""
        renamed = {self.outputs[k]: v for k, v in (output_grads or {}).items()
                   if k in self.outputs}
        unknown = set(output_grads or {}) - set(self.outputs)
        if unknown:  # the spec's check and message
            checks.check_names("output gradient (an output)", output_grads,
                               list(self.outputs), required=False)
        return self.spec_grads(self.tape.backward(renamed, state_grads))
