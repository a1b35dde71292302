"""Model's training-noise call path: the training network, its masks, spec-named gradients."""

from __future__ import annotations

from graphrnn import checks, config
from graphrnn.compiler.passes import schedule
from graphrnn.frontend.training_noise import mask_inputs, train_network
from graphrnn.noise import draw_masks


class TrainingNoiseCalls:
    """The methods :class:`~graphrnn.model.Model` runs for ``train=True`` on a network with
    training-time noise (``dropout``, ``zoneout``, ``weight_dropout``)."""

    #: ``(first row, global batch)`` when this call's batch is rows ``first..first+B-1`` of
    #: a larger one (a data-parallel rank's shard): the masks are those rows of its masks
    mask_rows: tuple[int, int] | None = None

    def _training_call(self, params, inputs, state, steps, seed, layout: str = "time"):
        """The training network's model, its plan and the arguments of this call: the masks
        as extra inputs (drawn on the backend's device), weight-dropped and renamed params;
        ``inputs`` in ``layout`` (the call passes them on as they are)."""
        from graphrnn.model import Model, to_time_major  # model.py imports this module
        if self._training is None:
            train_net, plan = train_network(self.net)
            inner = Model(train_net, schedule(train_net, passes=self.backend.passes()),
                          self.backend, self.dtype)
            inner._io_net = self.net
            self._training = inner, plan
        inner, plan = self._training
        checks.check_params(self.net, params)
        t, batch = checks.check_inputs(self.net, to_time_major(inputs, layout), steps)
        batch = checks.check_state(self.net, state, batch)
        seed = config.DEFAULT_SEED if seed is None else seed
        b = self.backend
        rows = self.mask_rows
        masks = (draw_masks(self.net, t, batch, seed, xp=b.xp, dtype=self.dtype) if rows is None
                 else draw_masks(self.net, t, rows[1], seed, xp=b.xp, dtype=self.dtype,
                                 rows=slice(rows[0], rows[0] + batch)))
        renamed = {v: k for k, v in plan.params.items()}
        inner_params = {}
        for name, value in params.items():
            if name in masks.weight_dropout:
                value = b.asarray(value, self.dtype)
                kept = self._dropped.get(name)
                if kept is None or kept.shape != value.shape:
                    kept = self._dropped[name] = b.xp.empty(value.shape, self.dtype)
                kept[...] = value * masks.weight_dropout[name]
                value = kept
            inner_params[renamed.get(name, name)] = value
        inner._feed = mask_inputs(plan, masks, self.net, t, b.xp)
        call = dict(params=inner_params, inputs=inputs, state=state, steps=steps, seed=seed,
                    layout=layout)
        return inner, plan, call, masks

    def _training_gradients(self, params, inputs, targets, loss, state, mask, steps, seed,
                            return_state, remat, lengths, layout):
        inner, plan, call, masks = self._training_call(params, inputs, state, steps, seed,
                                                       layout)
        names = plan.outputs
        checks.check_names("targets (outputs)", targets, list(self.net.outputs),
                           required=False)
        masks_arg = ({names[k]: v for k, v in mask.items()} if isinstance(mask, dict)
                     else mask)
        result = inner.gradients(targets={names[k]: v for k, v in targets.items()}, loss=loss,
                                 mask=masks_arg, return_state=return_state, train=False,
                                 remat=remat, lengths=lengths, **call)
        return (result[0], self._spec_grads(result[1], plan, masks), *result[2:])

    def _spec_grads(self, grads: dict, plan, masks, drop_inputs: bool = False) -> dict:
        """The training network's gradients under the spec's names: renamed parameters,
        weight-dropped matrices' gradients masked, and (``drop_inputs``) no ``input:`` keys
        for the masks the training network reads as inputs."""
        for new, old in plan.params.items():
            grads[old] = grads.pop(new)
        for name, m in masks.weight_dropout.items():
            grads[name] = (grads[name] * self.backend.to_numpy(m)).astype(self.dtype,
                                                                          copy=False)
        if drop_inputs:
            grads = {k: v for k, v in grads.items()
                     if not k.startswith("input:") or k[6:] in self.net.inputs}
        return grads
