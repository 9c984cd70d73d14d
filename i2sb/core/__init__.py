"""The paper on plain tensors: no network, no files, no config.

* :mod:`.bridge`        -- the schedule, q(X_t | X_0, X_1) (Eq. 11), the DDPM posterior (Eq. 4), Eq. 12;
* :mod:`.samplers`      -- Algorithm 2 and the faster samplers, free functions with one signature;
* :mod:`.sampler_coefs` -- their step coefficients, derived in the docstrings;
* :mod:`.boundary`      -- x1 as the network sees it (holes filled with noise, conditioning, x1 noise);
* :mod:`.denoiser`      -- the x0-predicting denoiser around a network (the authors' time input);
* :mod:`.precision`     -- autocast precision (``auto``: bf16 where the device runs it natively);
* :mod:`.layout`        -- the memory layout restoration feeds the network (channels-last on CPU);
* :mod:`.trajectory`, :mod:`.types` -- a step callback that records states; shared type aliases.
"""
