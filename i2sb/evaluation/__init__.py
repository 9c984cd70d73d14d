"""Scoring restorations: :mod:`.metrics` (PSNR, SSIM, FID, ResNet-50 accuracy on tensors), :mod:`.perceptual`
(LPIPS, optional ``lpips`` package), :mod:`.weights` (where their pre-trained networks come from), :mod:`.pairing`
(restorations and samples ``NAME_sK`` to references, the means), :mod:`.labels` (class labels for accuracy),
:mod:`.evaluate_folders` (a folder of restored images against references: what ``i2sb-eval`` runs) and :mod:`.report`
(its table)."""
