"""The paper's fusion: two ELMs in a row, then an SVM (sections 2.3.3 and 2.4).

Per segment, the last hidden FC layer of each CNN branch (``fc_audio.h5``,
``fc_video.h5``) is standardised on the fold's training rows and the two are
concatenated (one branch alone when ``base.modalities`` has one). Then:

1. **ELM-1** learns gender (2 classes) with ``fusion.elm1_hidden`` hidden nodes;
2. its output layer is dropped and its **hidden layer output** (``transform``) is the
   input of **ELM-2**, which learns the emotions with ``elm2_hidden_per_class`` x C
   hidden nodes;
3. ELM-2's scores go through a softmax (``predict_proba``), and an **SVM** fitted on
   those probability rows gives the final emotion.

:class:`TwoStageELM` is steps 1-2 (with the scaler), :class:`ELMFusion` the whole
system as one scikit-learn classifier. The DVC stages run the same parts in two steps
(:func:`~avemotion.fusion.stages.run_fit_elm`, :func:`~avemotion.fusion.stages.run_fit_svm`)
so that an SVM param reruns only the SVM.

The modules: :mod:`.estimators` (the scikit-learn estimators), :mod:`.pairing` (which
audio row goes with which video row) and :mod:`.stages` (what the DVC stages run).

Choices the paper leaves open, made here:

- **Stacking.** The paper fits ELM-1, ELM-2 and the SVM on the same training rows, so
  the SVM learns from ELM-2 scores on rows ELM-2 has already fitted (a leak: they are
  more confident than on unseen rows). Both are computed in every run: ``elm_svm``
  (the paper) and ``elm_svm_crossfit``, whose SVM learns from out-of-fold ELM-2 scores:
  the training rows are split by speaker with ``GroupKFold`` (``cross_fit_folds``) and
  each row is scored by an ELM pair fitted without its speaker; test rows are scored by
  the ELM pair fitted on all training rows, in both systems.
- **ELM-1's hidden layer is not trained.** An ELM's hidden weights are random; only its
  output weights learn. So ELM-2's input, ELM-1's hidden output, does not depend on the
  gender labels at all: as the paper describes it, gender only shapes ELM-1's own
  (discarded) output layer, whose accuracy is reported. ``fusion.elm2_input:
  hidden_and_gender`` appends ELM-1's two gender probabilities to its hidden output, one
  way to let gender reach ELM-2; the default ``hidden`` is the paper's.
- **No gender labels.** With ``fusion.use_gender: false`` ELM-1 is skipped and ELM-2
  reads the standardised features directly.
- **SVM scores.** Clip-level averaging needs class scores per segment. The default
  ``svm_scores: softmax`` takes a softmax over the SVC's one-vs-rest decision function
  (deterministic, cheap; its argmax is the SVC's prediction); ``platt`` calibrates the
  SVC by Platt scaling on 5-fold cross-validated decision values (what
  ``SVC(probability=True)`` did before scikit-learn 1.9 deprecated it: slower, and its
  argmax can disagree with ``SVC.predict``).
- **Pairing audio and video rows** (:func:`.pairing.pair_rows`): see that function.
- **One gender.** A corpus whose training speakers are all one gender (SAVEE: four
  men) gives ELM-1 one class to learn: ELM-1 is skipped there (as with
  ``use_gender: false``), and the fold's metrics and the stage's output say why.
"""
