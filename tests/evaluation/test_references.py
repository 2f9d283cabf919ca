import math

from serlib.evaluation.references import EMOBOX_INTRA, emobox_reference


def test_emobox_rows_keep_wa_and_macro_f1_apart():
    # EmoBox, RAVDESS, wav2vec 2.0 base: UA 54.33 / WA 55.40 / F1 53.99 (the F1 once stood in the WA column)
    row = emobox_reference("ravdess").set_index("model").loc["wav2vec 2.0 base"]
    assert (row["UA %"], row["WA %"], row["macro-F1 %"]) == (54.33, 55.40, 53.99)
    assert row["source"].startswith("reference: ")


def test_emobox_f1_not_on_hand_stays_empty_and_unknown_corpora_give_no_rows():
    table = emobox_reference("emodb")
    assert len(table) == len(EMOBOX_INTRA["emodb"]) and all(math.isnan(v) for v in table["macro-F1 %"].astype(float))
    assert emobox_reference("no-such-corpus").empty
