"""The compiled model: ``compile``, ``init_params``, ``forward`` and ``gradients`` (the API)."""

from __future__ import annotations

import numpy as np

from graphrnn import checks, config
from graphrnn.backends import get_backend, kept_runs
from graphrnn.backends.kept_runs import KeptRuns, boundary_row
from graphrnn.compiler.ir import Program, format_program
from graphrnn.compiler.passes import schedule
from graphrnn.errors import DataError, DivergenceError
from graphrnn.executor import Run, final_rows
from graphrnn.frontend.init import init_params
from graphrnn.frontend.network import Network
from graphrnn.frontend.training_noise import eval_network
from graphrnn.lengths import LengthPlan, check_lengths, valid_mask
from graphrnn.model_noise import TrainingNoiseCalls
from graphrnn.noise import draw_noise
from graphrnn.packed import (
    one_call,
    packed_forward,
    packed_loss_gradients,
    packed_record,
    plan_chunks,
)
from graphrnn.tape import Tape, TrainingTape
from graphrnn.training.losses import LOSSES, loss_and_grad

DTYPES = {"float32": np.float32, "float64": np.float64}
#: see :mod:`graphrnn.backends.kept_runs`
RUNS_KEPT, RUN_KEPT_BYTES = kept_runs.RUNS_KEPT, kept_runs.RUN_KEPT_BYTES


class Model(TrainingNoiseCalls, KeptRuns):
    """A network compiled for one backend and dtype. Create it with :func:`compile`."""

    def __init__(self, net: Network, program: Program, backend, dtype, layout: str = "time"):
        self.net, self.program, self.backend, self.dtype = net, program, backend, dtype
        #: the default layout of inputs and outputs: "time" (T, B, size) or "batch" (B, T, size)
        self.layout = layout
        KeptRuns.__init__(self)
        #: ``(model, plan)`` of the training network (``train=True``), made on first use
        self._training = None
        #: weight-dropped copies of parameters, one array per name, reused across calls
        self._dropped: dict = {}
        #: a training network's model: the spec's network (whose inputs callers pass; its
        #: parameters are checked before the masks apply) and the masks, by input name,
        #: written straight into their buffers (device arrays stay on the device)
        self._io_net: Network | None = None
        self._feed: dict = {}
        #: inside a packed call (its chunks run masked, not packed again)
        self._in_packed = False

    def __repr__(self) -> str:
        return (f"Model({self.net.name!r}, backend={self.backend.name!r}, "
                f"dtype={np.dtype(self.dtype).name!r})")

    def schedule(self) -> str:
        """The compiled Program as text."""
        return format_program(self.program)

    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Fresh parameters (see :func:`~graphrnn.frontend.init.default_init`) of the dtype.

        Parameters
        ----------
        seed : int
            Seed of ``numpy.random.default_rng``; the same seed gives the same parameters.
        """
        return {k: v.astype(self.dtype) for k, v in init_params(self.net, seed).items()}

    def forward(self, params: dict, inputs: dict, state: dict | None = None,
                steps: int | None = None, seed: int | None = None, train: bool = False,
                record: bool = False, input_grads: bool = True, lengths=None,
                layout: str | None = None):
        """Run the network over a sequence.

        Parameters
        ----------
        params : dict
            Name -> array, as :meth:`init_params` returns.
        inputs : dict
            Input name -> array ``(T, B, size)``, time-major. ``{}`` for a network without
            inputs (then ``steps`` says how many steps to run).
        state : dict, optional
            Initial states by key (``NODE``, ``NODE@-k``; ``NODE@+k`` for the boundary after the
            last step that negative delays read), each ``(B, size)``; missing keys take the
            node's initial state (zeros after the end). Pass a previous call's final state to
            continue a sequence (for ``@+k`` keys: the chunk before, fed in reverse order).
        steps : int, optional
            Number of steps for a network without inputs.
        seed : int, optional
            Seed of the stochastic units, asynchronous orders and training masks
            (``GRAPHRNN_SEED`` if None).
        train : bool
            Apply the training-time noise (``dropout``, ``zoneout``, ``weight_dropout``) with
            masks drawn from ``seed``; False (the default): deterministic, zoneout as its
            expectation.
        record : bool
            Also return a :class:`~graphrnn.tape.Tape` for a backward pass from any output
            and final-state gradients (what a framework's autograd needs).
        input_grads : bool
            With ``record``: whether the tape computes the inputs' gradients (``input:NAME``);
            False saves their GEMMs where no one needs them.
        lengths : array ``(B,)`` of int, optional
            Sequence b exists for steps ``0..lengths[b]-1`` (values in ``1..T``): its outputs
            past the end are zeros, its causal final state is its value at step
            ``lengths[b] - 1``, and anti-causal loops start at its own last step (as
            ``torch.nn.utils.rnn.pack_padded_sequence``).
        layout : {"time", "batch"}, optional
            ``"batch"``: inputs and outputs are batch-major ``(B, T, size)`` (torch's
            ``batch_first=True``); targets and masks of :meth:`gradients` likewise ``(B, T...)``.
            Default: the model's (``compile(..., layout=)``).

        Returns
        -------
        outputs : dict
            Output name -> ``(T, B, size)`` (``(B, T, size)`` with ``layout="batch"``).
        state : dict
            The final state, same keys as ``state`` takes.
        tape : Tape
            Only with ``record=True``.
        """
        layout = layout or self.layout
        if train and self.net.has_training_noise:
            inner, plan, call, masks = self._training_call(params, inputs, state, steps, seed,
                                                           layout)
            call.update(lengths=lengths)
            if not record:
                outputs, final = inner.forward(**call)
                return {o: outputs[plan.outputs[o]] for o in self.net.outputs}, final
            outputs, final, tape = inner.forward(**call, record=True, input_grads=input_grads)
            tape = TrainingTape(self, tape, plan.outputs,
                                lambda g: self._spec_grads(g, plan, masks, drop_inputs=True))
            return {o: outputs[plan.outputs[o]] for o in self.net.outputs}, final, tape
        inputs = to_time_major(inputs, layout)
        plan = self._packing(inputs, lengths, steps)
        if plan is not None and record:
            self._check_differentiable()
            self._in_packed = True
            try:
                outputs, final, tape = packed_record(self, params, inputs, state, plan[0],
                                                     plan[1:3], plan[3], bool(input_grads),
                                                     layout)
            finally:
                self._in_packed = False
            if layout == "batch":
                outputs = {k: v.swapaxes(0, 1) for k, v in outputs.items()}
            return outputs, final, tape
        if plan is not None:
            self._in_packed = True
            try:
                outputs, final = packed_forward(self, params, inputs, state, plan[0],
                                                plan[1:3], plan[3])
            finally:
                self._in_packed = False
            if layout == "batch":
                outputs = {k: v.swapaxes(0, 1) for k, v in outputs.items()}
            return outputs, final
        if record:
            self._check_differentiable()
            run = self._run(params, inputs, state, steps, seed, backward=True,
                            lease=("tape", bool(input_grads)), lengths=lengths)
            tape = Tape(self, run, state or {}, bool(input_grads), leased=True, layout=layout)
        else:
            run = self._run(params, inputs, state, steps, seed, lengths=lengths)
        with config.timed(1, "forward"):
            run.forward()
        checks.check_outputs_finite(run, self.net.outputs)
        outputs, final = self._outputs(run, layout), self._final_state(run)
        return (outputs, final, tape) if record else (outputs, final)

    def gradients(self, params: dict, inputs: dict, targets: dict, loss: str = "mse",
                  state: dict | None = None, mask=None, steps: int | None = None,
                  seed: int | None = None, return_state: bool = False, train: bool = True,
                  remat: int | None = None, lengths=None, layout: str | None = None):
        """Loss and its gradient by backpropagation through time.

        Parameters
        ----------
        params, inputs, state, steps, seed
            As for :meth:`forward`.
        targets : dict
            Output name -> target: ``(T, B, size)`` for ``mse``, integer labels ``(T, B)`` for
            ``cross_entropy``. Several targets: the loss is the sum of each output's loss.
        loss : {"mse", "cross_entropy"}
        mask : array ``(T, B)`` or dict output -> array, optional
            Per-step weights (e.g. 1 on the last step only); the mean runs over masked steps.
        return_state : bool
            Also return the final state (to carry across chunks: truncated BPTT).
        train : bool
            Apply the training-time noise (the default; see :meth:`forward`): the gradient is
            that of the masked network, the masks held fixed.
        remat : int, optional
            Gradient checkpointing: keep the recurrent loops' own rows only every ``remat``
            steps and recompute each segment of ``remat`` steps in the backward pass (about
            one extra forward pass of the loops, for memory that no longer grows with T for
            those rows; ``remat`` near sqrt(T) is a good choice). Same gradients to rounding.
        lengths, layout
            As for :meth:`forward`; the loss skips the steps past each sequence's end.

        Returns
        -------
        loss : float
        grads : dict
            Same keys as ``params`` (zeros for frozen ones), plus ``"state:KEY"`` for every
            key of a passed ``state``.
        final_state : dict
            Only with ``return_state=True``.
        """
        if loss not in LOSSES:
            raise DataError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if remat is not None and (isinstance(remat, bool) or not isinstance(remat, int)
                                  or remat < 1):
            raise DataError(f"remat must be a whole number of steps >= 1, not {remat!r}")
        if remat is not None and lengths is not None and any(self.net.future.values()):
            raise DataError("remat= with lengths= does not take a network that reads ahead "
                            "(NODE@+k) yet: pass one of them")
        layout = layout or self.layout
        if train and self.net.has_training_noise:
            return self._training_gradients(params, inputs, targets, loss, state, mask, steps,
                                            seed, return_state, remat, lengths, layout)
        self._check_differentiable()
        inputs, targets = to_time_major(inputs, layout), to_time_major(targets, layout)
        plan = None if remat is not None else self._packing(inputs, lengths, steps)  # masked
        if plan is not None:
            self._in_packed = True
            try:
                masks = to_time_major(mask if isinstance(mask, dict)
                                      else {name: mask for name in targets}, layout)
                total, grads, final = packed_loss_gradients(self, params, inputs, targets, loss,
                                                            state, masks, plan)
            finally:
                self._in_packed = False
            return (total, grads, final) if return_state else (total, grads)
        run = self._run(params, inputs, state, steps, seed, backward=True, remat=remat,
                        lengths=lengths)
        checks.check_targets(self.net, targets, loss, run.steps, run.batch)
        masks = mask if isinstance(mask, dict) else {name: mask for name in targets}
        checks.check_names("mask (an output)", masks, list(targets), required=False)
        masks = to_time_major(masks, layout)
        if run.lengths_plan is not None:
            valid = valid_mask(run.lengths_plan.lengths, run.steps)
            masks = {name: valid if masks.get(name) is None
                     else valid * checks.check_mask(name, masks[name], run.steps, run.batch)
                     for name in targets}
        with config.timed(1, "forward"):
            run.forward()
        checks.check_outputs_finite(run, targets)
        run.zero_grads()
        total = 0.0
        for name, target in targets.items():
            m = masks.get(name)
            if m is not None:
                m = self.backend.asarray(checks.check_mask(name, m, run.steps, run.batch),
                                         self.dtype)
            y = run.rows(name, 0, run.steps)
            target = self.backend.asarray(target, self.dtype if loss == "mse" else np.int64)
            if run.lengths_plan is not None:
                y = y * m[..., None]  # the outputs past the end are zeros
            value, dy = loss_and_grad(loss, y, target, m)
            total += value
            run.rows(name, 0, run.steps, grad=True)[...] += dy
        if not np.isfinite(total):
            raise DivergenceError(f"the loss is {total}: the forward pass overflowed")
        grads = Tape(self, run, state or {}, input_grads=False)._backward(inputs=False)
        return (total, grads, self._final_state(run)) if return_state else (total, grads)

    # -- helpers ----------------------------------------------------------------------------

    def _packing(self, inputs, lengths, steps):
        """``(lengths, order, chunks, T)`` where a call with ``lengths`` runs packed
        (:mod:`graphrnn.packed`), else None."""
        if (lengths is None or self._in_packed or not self.net.inputs
                or self._io_net is not None):  # a training network: masked (its masks)
            return None
        t, batch = checks.check_inputs(self.net, inputs, steps)
        lengths = check_lengths(lengths, t, batch)
        chunks = plan_chunks(self.net, lengths, t, whole=one_call(self, batch, lengths.mean() / t))
        if chunks is None:
            return None
        checks.check_run_memory(self.net, self.program, t, batch, self.dtype, True)
        return (lengths, *chunks, t)

    def _check_differentiable(self) -> None:
        for name, node in self.net.nodes.items():
            if node.update == "asynchronous":
                raise DataError(f"node {name!r} updates asynchronously: gradients through "
                                "asynchronous updates are not supported")

    def _run(self, params, inputs, state, steps, seed, backward: bool = False,
             lease=None, remat: int | None = None, lengths=None) -> Run:
        net, b = self.net, self.backend
        self._check_params(params)
        t, batch = checks.check_inputs(self._io_net or net, inputs, steps)
        batch = checks.check_state(net, state, batch)
        state = state or {}
        given = {(name, k) for key, name, k in net.boundaries if key in state}
        # a packed call's chunks: checked once for the whole; a kept Run's buffers exist
        if not self._in_packed and not self._has_kept_run(t, batch, given, lease, remat,
                                                          backward):
            checks.check_run_memory(net, self.program, t, batch, self.dtype, backward)
        noise = draw_noise(net, t, batch, config.DEFAULT_SEED if seed is None else seed)
        device_params = {k: b.asarray(v, self.dtype) for k, v in params.items()}
        run = self._kept_run(device_params, t, batch, noise, given, lease, remat)
        run.ran_backward = backward or getattr(run, "ran_backward", False)
        for name in net.inputs:
            value = b.asarray(inputs[name] if name in inputs else self._feed[name], self.dtype)
            run.rows(name, 0, t)[...] = value[..., None] if name in net.tokens else value
        learned = self._learned_states()
        for key, name, k in net.boundaries:
            row = boundary_row(run, name, k)
            if (name, k) in given:
                row[...] = b.asarray(state[key], self.dtype)
            elif name not in learned or k < 0:  # a learned state's InitState op writes the rest
                row.fill(0)
        run.lengths_plan = None
        if lengths is not None:
            plan = LengthPlan(run, check_lengths(lengths, t, run.batch), net.future)
            plan.set_values()
            plan.place(net.inputs)
            run.lengths_plan = plan
        return run

    def _outputs(self, run: Run, layout: str = "time") -> dict:
        plan = run.lengths_plan
        valid = None if plan is None else self.backend.asarray(
            valid_mask(plan.lengths, run.steps)[..., None], self.dtype)
        outputs = {}
        for o in self.net.outputs:
            y = run.rows(o, 0, run.steps)
            y = self.backend.export(y if valid is None else y * valid)
            outputs[o] = y.swapaxes(0, 1) if layout == "batch" else y
        return outputs

    def _final_state(self, run: Run) -> dict:
        plan = run.lengths_plan
        final = {}
        for key, name, k in self.net.boundaries:
            if plan is None or k < 0:
                final[key] = self.backend.export(run.rows(name, *final_rows(run.steps, k))[0])
            else:  # each sequence's value at its own step lengths[b] - k
                rows = run.rows(name, -run.pads[name], run.steps)
                pick = self.backend.asarray(plan.lengths - k + run.pads[name], np.int64)
                final[key] = self.backend.export(rows[pick, self.backend.xp.arange(run.batch)])
        return final

    def _param_grads(self, run: Run, state: dict) -> dict:
        grads = {}
        for name, p in self.net.params.items():
            g = run.param_grads.get(name)  # a learned initial state's too (its InitState op)
            grads[name] = (np.zeros(p.shape, dtype=self.dtype) if g is None
                           else self.backend.to_numpy(g).astype(self.dtype, copy=False))
        plan = run.lengths_plan
        for key, name, k in self.net.boundaries:
            if key in state and name in run.grads_wanted:
                g = (plan.grads.get((name, -k)) if plan is not None and k < 0
                     else boundary_row(run, name, k, grad=True))
                grads[f"state:{key}"] = (np.zeros((run.batch, run.size(name)), self.dtype)
                                         if g is None else self.backend.export(g))
        return grads


def to_time_major(arrays, layout: str):
    """``arrays`` (a dict, or None) time-major: views of batch-major ``(B, T, ...)`` arrays
    with their first two axes swapped (no copy) for ``layout="batch"``."""
    if layout not in ("time", "batch"):
        raise DataError(f"unknown layout {layout!r}; choose 'time' (T, B, size) or 'batch' "
                        "(B, T, size)")
    if layout == "time" or not isinstance(arrays, dict):
        return arrays
    return {k: None if v is None else np.asarray(v).swapaxes(0, 1) for k, v in arrays.items()}


def compile(net: Network, backend: str = "numpy", dtype: str = "float32",  # noqa: A001
            layout: str = "time") -> Model:
    """Compile a network for a backend.

    Parameters
    ----------
    net : Network
        From :func:`graphrnn.load_spec`.
    backend : {"numpy", "numpy-ufuncs", "cupy", "auto"}
        ``auto`` picks CuPy when a GPU is usable, NumPy otherwise. ``numpy`` runs element-wise
        chains as C compiled on first use where a C compiler works; ``numpy-ufuncs`` never does.
    dtype : {"float32", "float64"}
    layout : {"time", "batch"}
        The default layout of :meth:`Model.forward` and :meth:`Model.gradients`: time-major
        ``(T, B, size)`` or batch-major ``(B, T, size)`` (torch's ``batch_first=True``).

    Returns
    -------
    Model
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose 'float32' or 'float64'")
    if not isinstance(net, Network):
        raise TypeError(f"compile() takes a Network (from load_spec), not {type(net).__name__}")
    to_time_major(None, layout)  # an unknown layout: one clear error now
    b = get_backend(backend)
    with config.timed(1, "compile"):
        program = schedule(eval_network(net), passes=b.passes())
    return Model(net, program, b, DTYPES[dtype], layout)
