"""How the book's numbers are made, on top of the core (:mod:`skinseg`).

:mod:`~skinseg.lab.experiment` (both models, several seeds, every artifact), :mod:`~skinseg.lab.slice`,
:mod:`~skinseg.lab.archive`, :mod:`~skinseg.lab.merge` and :mod:`~skinseg.lab.order` (GPU time in
slices), :mod:`~skinseg.lab.sweep` and :mod:`~skinseg.lab.variants` (recipe variants on validation), :mod:`~skinseg.lab.external`
(external test sets), :mod:`~skinseg.lab.endpoints` (the evaluation protocol, a run scored at both endpoints),
:mod:`~skinseg.lab.protocols` (the data protocols: the article's ISIC 2016 splits rebuilt from ISIC 2017),
:mod:`~skinseg.lab.stats` (paired and two-level comparisons),
:mod:`~skinseg.lab.artefacts` and :mod:`~skinseg.lab.duplicates` (the data's artefacts and identical images),
:mod:`~skinseg.lab.results` and :mod:`~skinseg.lab.display` (reading the committed results),
:mod:`~skinseg.lab.result_files` (its JSON, CSV and npz files and ``compare``'s per-image tables, damaged ones named),
:mod:`~skinseg.lab.run_errors` (fit's checkpoint errors in the words of experiment and sweep),
:mod:`~skinseg.lab.bench`, :mod:`~skinseg.lab.bench_results` and :mod:`~skinseg.lab.plan`
(speed and run costs), :mod:`~skinseg.lab.provenance` and :mod:`~skinseg.lab.leakage`; and
:mod:`~skinseg.lab.synthetic`, the SYNTHETIC images the tests and the CI run on.
"""
