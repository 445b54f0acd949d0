"""The audio branch's signal side, laid out like :mod:`avemotion.video`.

- :mod:`.clips`: decoding any container to mono at one rate, and cutting the analysis
  segments both audio systems read;
- :mod:`.spectrogram`: the log-mel + delta + delta-delta images (signal code only);
- :mod:`.frontend`: the build_spectrograms stage (noise augmentation, workers, HDF5);
- :mod:`.mfcc`: the MFCC statistics of the paper's benchmark (stage build_mfcc).
"""
