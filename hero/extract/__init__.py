"""Frame features from raw videos: PyAV decoding, ResNet-152 and SlowFast-R50 in plain torch.

* `hero.extract.video`: one sequential decoding pass, the reference's frame/clip sampling rules.
* `hero.extract.resnet`, `hero.extract.slowfast`: the networks, with torchvision / pytorchvideo
  state-dict keys so the public weights files load unchanged.
* `hero.extract.backbones`: sampling + preprocessing + weights per feature set (also ``hf:`` models).
* `hero.extract.pipeline`: ``hero extract`` (sharding, resume, progress, failures, metadata).
"""
