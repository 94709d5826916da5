"""Argument lists shared by the reliability tests."""

#: A DLG LeNet on two 8x8 grey images, 4 classes (every attack iteration takes milliseconds).
CAPTURE = ["-o", "capture.model=dlg_lenet", "-o", "capture.num_classes=4", "-o", "capture.batch_size=2",
           "-o", "capture.image_size=8", "-o", "capture.channels=1", "-o", "capture.mean=[0.5]",
           "-o", "capture.std=[0.5]", "-o", "run.device=cpu"]
#: Signed Adam with noise, joint labels: deterministic per seed, resumable.
ATTACK = ["-c", "ga", "-o", "attack.iterations=24", "-o", "attack.noise=0.2", "-o", "attack.label_strategy=joint",
          "-o", "attack.early_stop_tv=0", "-o", "run.progress=false", "-o", "run.device=cpu", "--snapshot-every", "4"]
