"""Training (Algorithm 1) on one or many devices.

* :mod:`.loop`       -- ``train(cfg)``: resume, steps, logging, validation, checkpoints, clean stops;
* :mod:`.trainer`    -- one rank's state and optimiser step (the one resolved config, the step counter);
* :mod:`.validation` -- restoring a fixed batch through :class:`i2sb.restoration.Restorer` (PSNR, grids);
* :mod:`.stop`       -- signals become a stop at the next step boundary, agreed by every rank;
* :mod:`.launchers`  -- rank, world size and master from torchrun, submitit or srun (one-line launch errors);
* :mod:`.ema`, :mod:`.dist`, :mod:`.writers` -- EMA weights, torch.distributed set-up, metric writers.
"""
