"""The authors' I2SB code (NVlabs/I2SB) driven from a clone, for side-by-side speed and quality checks
(``scripts/bench.py``, ``scripts/compare_authors.py``; never imported by the library).

Nothing of the authors' code lives in this repository: every function here imports their modules at run
time from PATH, a clone (or ``git archive``) of https://github.com/NVlabs/I2SB, i.e. a folder holding
``i2sb/runner.py``, ``i2sb/diffusion.py``, ``i2sb/network.py``, ``guided_diffusion/`` and ``corruption/``.
This package imports without PATH; only calling its functions needs it.

What runs is their code, unmodified:

* ``Runner.__init__`` (their schedule, ``Diffusion``, ``noise_levels``, ``Image256Net``, ``torch_ema``), with
  one substitution: ``Image256Net`` reads its guided-diffusion ``create_model`` arguments from a pickle in
  ``ckpt_dir``; we write that pickle for the requested (small) U-Net and pass ``pretrained_adm=False``,
  so ``create_model`` / ``UNetModel`` build the network exactly as they would build ADM-256.
* one training iteration = the body of ``Runner.train``'s loop: ``optimizer.zero_grad()``, per microbatch
  ``Runner.sample_batch`` (their corruption, on the fly), ``torch.randint`` step, ``Diffusion.q_sample``,
  ``Runner.compute_label``, ``net(xt, step, cond=cond)`` (their time conversion), ``F.mse_loss``,
  ``backward``; then ``optimizer.step()`` (their ``build_optimizer_sched``: AdamW with PyTorch's default
  implementation, StepLR), ``ema.update()``, ``sched.step()`` and the per-iteration ``loss.item()`` log.
  Their DDP wrapper is optional (``ddp=True``: a world-size-1 gloo group on the CPU); DDP with one process
  adds only bucket copies, and a CPU user running their code without torchrun would not have it.
* restoration = ``Runner.ddpm_sampling`` (EMA weights swapped in, ``Diffusion.ddpm_sampling``, trajectory
  copies at the log steps), returning ``xs[:, 0]`` as their ``sample.py`` does.

Modules their files import that have no part in these paths are stubbed while their modules load, when not
installed: ``ipdb`` (``set_trace``), ``wandb``, ``torch.utils.tensorboard``, ``torchmetrics``, ``gdown``,
``prefetch_generator``, ``easydict``. ``torch_ema`` is real and required (``pip install torch-ema``). Their
package is loaded under the name ``authors_i2sb`` (never ``i2sb``, which is ours); PATH is appended to the
end of ``sys.path`` for their top-level packages (``guided_diffusion``, ``corruption``, ...).

API::

    from authors_code import AuthorsI2SB, make_train_step, make_sampler, train_for
    kw = dict(image_size=64, model_channels=64, out_channels=3, num_res_blocks=2, attention_resolutions=(4,),
              channel_mult=(1, 2, 2), num_heads=1, num_head_channels=32, use_scale_shift_norm=True,
              resblock_updown=True)                      # guided-diffusion UNetModel names (= i2sb.unet.UNet)
    step = make_train_step(PATH, kw, batch=8, size=64, task="jpeg10", lr=5e-5, seed=0)
    loss = step(x0)                                      # x0 (8, 3, 64, 64) in [-1, 1]; one optimiser step
    sample = make_sampler(PATH, kw, size=64, task="jpeg10", state_dict=our_unet.state_dict())
    restored = sample(x1, 10)                            # their NFE-10 DDPM sampler on degraded x1
    model = train_for(PATH, kw, batches, seconds=600)    # an AuthorsI2SB trained for 10 minutes
    model.restore(x1, nfe=10); model.ema_unet_state_dict()   # -> loads into i2sb.unet.UNet (same keys)

Modules: :mod:`.loading` (their modules imported from PATH, optional ones stubbed), :mod:`.options` (their
``argparse`` options and ``create_model`` arguments for one of our tasks), :mod:`.model` (their ``Runner``:
one training iteration, restoration). ``python scripts/authors_code PATH`` runs a one-step smoke test.
"""

from .loading import PACKAGE, REQUIRED, AuthorsCodeError, check_path, load_authors
from .model import AuthorsI2SB, make_sampler, make_train_step, train_for
from .options import TASKS, create_model_kwargs, options, our_unet_kwargs, set_seed

__all__ = ["PACKAGE", "REQUIRED", "TASKS", "AuthorsCodeError", "AuthorsI2SB", "check_path", "create_model_kwargs",
           "load_authors", "make_sampler", "make_train_step", "options", "our_unet_kwargs", "set_seed", "train_for"]
