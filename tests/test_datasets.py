"""The dataset adapters read real corpora (and fabricated trees of real files) right."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import shared

from avemotion.datasets import ClipRecord, Unlabelled, iter_records, media_files
from avemotion.errors import BadInputError


def records(dataset: str, root: Path, **options) -> list[ClipRecord]:
    out = list(iter_records(dataset, root, options))
    assert all(isinstance(r, ClipRecord) for r in out), [
        r for r in out if isinstance(r, Unlabelled)
    ]
    return out


def link(target: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def test_ravdess_audio_visual_actor01():
    clips = records("ravdess", shared("ravdess-av-actor01"))
    assert len(clips) == 11
    assert {c.speaker for c in clips} == {"01"}
    assert {c.gender for c in clips} == {"male"}  # odd actor numbers are male
    by_id = {c.clip_id: c for c in clips}
    assert by_id["01-01-08-02-02-02-01"].emotion == "surprised"
    assert by_id["02-01-04-01-02-01-01"].emotion == "sad"
    assert by_id["01-01-01-01-02-01-01"].sentence == "Dogs are sitting by the door"
    assert Counter(c.emotion for c in clips) == {"neutral": 5, "surprised": 4, "calm": 1, "sad": 1}


def test_ravdess_speech_all_actors():
    clips = records("ravdess", shared("ravdess-speech"))
    assert len(clips) == 1080
    per_speaker = Counter(c.speaker for c in clips)
    assert len(per_speaker) == 18 and set(per_speaker.values()) == {60}
    for clip in clips:
        assert clip.gender == ("male" if int(clip.speaker) % 2 else "female")
        assert clip.speaker == clip.path.parent.name.split("_")[1]
    emotions = Counter(c.emotion for c in clips)
    assert emotions["neutral"] == 18 * 4 and emotions["angry"] == 18 * 8 and len(emotions) == 8


def test_ravdess_song_filter(tmp_path):
    source = shared("ravdess-speech/Actor_02/03-01-05-01-01-01-02.flac")
    link(source, tmp_path / "03-01-05-01-01-01-02.flac")
    link(source, tmp_path / "03-02-05-01-01-01-02.flac")
    assert len(records("ravdess", tmp_path)) == 2
    assert [c.clip_id for c in records("ravdess", tmp_path, vocal_channels=["speech"])] == [
        "03-01-05-01-01-01-02"
    ]


def test_corpus_of_links_to_actor_folders_reads_like_the_folders(tmp_path):
    real = shared("ravdess-speech")
    for actor in ("Actor_01", "Actor_02", "Actor_17"):
        link(real / actor, tmp_path / "corpus" / actor)
    linked = records("ravdess", tmp_path / "corpus")
    assert len(linked) == 3 * 60
    direct = [c for c in records("ravdess", real) if c.speaker in ("01", "02", "17")]

    def seen(clips: list[ClipRecord], root: Path) -> list[tuple]:
        return [
            (c.path.relative_to(root), c.clip_id, c.speaker, c.gender, c.emotion, c.sentence)
            for c in clips
        ]

    assert seen(linked, tmp_path / "corpus") == seen(direct, real)


def test_link_loops_end_and_each_real_folder_is_walked_once(tmp_path):
    flac = shared("ravdess-speech/Actor_02/03-01-05-01-01-01-02.flac")
    corpus = tmp_path / "corpus"
    link(flac, corpus / "Actor_02" / "03-01-05-01-01-01-02.flac")
    link(flac, corpus / "Actor_02" / "03-01-05-01-01-02-02.flac")
    link(corpus, corpus / "Actor_02" / "up")  # a link to an ancestor
    link(Path("."), corpus / "Actor_02" / "here")  # a link to itself
    link(Path("Actor_02"), corpus / "Actor_00")  # a second way in, sorted first
    link(tmp_path / "store" / "Actor_03", corpus / "Actor_03b")  # two links to one folder
    link(tmp_path / "store" / "Actor_03", corpus / "Actor_03a")
    link(flac, tmp_path / "store" / "Actor_03" / "03-01-05-01-01-01-03.flac")
    expected = [
        corpus / "Actor_02" / "03-01-05-01-01-01-02.flac",  # its direct path, not Actor_00
        corpus / "Actor_02" / "03-01-05-01-01-02-02.flac",
        corpus / "Actor_03a" / "03-01-05-01-01-01-03.flac",  # the first of equal links
    ]
    assert media_files(corpus) == expected
    assert [c.path for c in records("ravdess", corpus)] == expected


def test_broken_links_never_crash_the_walk(tmp_path):
    flac = shared("ravdess-speech/Actor_02/03-01-05-01-01-01-02.flac")
    corpus = tmp_path / "corpus"
    link(flac, corpus / "Actor_02" / "03-01-05-01-01-01-02.flac")
    broken = link(tmp_path / "gone.flac", corpus / "Actor_02" / "03-01-05-01-01-02-02.flac")
    looped = link(
        Path("03-01-06-01-01-01-02.flac"), corpus / "Actor_02" / "03-01-06-01-01-01-02.flac"
    )
    link(tmp_path / "unmounted", corpus / "Actor_05")  # a folder link: not media, passed over
    # Broken media links are listed: the index stage rejects them with the reason.
    assert media_files(corpus) == [
        corpus / "Actor_02" / "03-01-05-01-01-01-02.flac",
        broken,
        looped,
    ]
    assert len(records("ravdess", corpus)) == 3


def test_crema_d_flat_without_and_with_demographics(tmp_path):
    root = shared("crema-d-mini")
    clips = records("crema_d", root)
    assert len(clips) == 12
    assert {c.gender for c in clips} == {"unknown"}
    assert Counter(c.speaker for c in clips) == {"1001": 6, "1002": 6}
    assert {c.emotion for c in clips} == {"angry", "disgust", "fearful", "happy", "neutral", "sad"}
    assert {c.sentence for c in clips} == {"Don't forget a jacket"}
    table = tmp_path / "VideoDemographics.csv"
    table.write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n"
    )
    genders = {c.speaker: c.gender for c in records("crema_d", root, demographics=str(table))}
    assert genders == {"1001": "male", "1002": "female"}


def test_crema_d_corpus_layout_finds_demographics_beside_clips(tmp_path):
    root = shared("crema-d-mini")
    link(root / "1001_DFA_ANG_XX.flv", tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    link(root / "1002_DFA_SAD_XX.mp3", tmp_path / "AudioWAV" / "1002_DFA_SAD_XX.mp3")
    (tmp_path / "VideoDemographics.csv").write_text("ActorID,Sex\n1001,Male\n1002,Female\n")
    clips = {c.clip_id: c for c in records("crema_d", tmp_path)}
    assert clips["1001_DFA_ANG_XX"].gender == "male" and clips["1001_DFA_ANG_XX"].emotion == "angry"
    assert clips["1002_DFA_SAD_XX"].gender == "female" and clips["1002_DFA_SAD_XX"].emotion == "sad"


def test_crema_d_missing_demographics_file_is_a_clear_error(tmp_path):
    with pytest.raises(BadInputError, match="demographics not found"):
        records("crema_d", shared("crema-d-mini"), demographics=str(tmp_path / "nope.csv"))


def test_enterface05_with_and_without_sentence_level(tmp_path):
    flv = shared("crema-d-mini/1001_DFA_ANG_XX.flv")
    link(flv, tmp_path / "subject 1" / "anger" / "sentence 1" / "s1_an_1.avi")
    link(flv, tmp_path / "subject 1" / "happiness" / "sentence 5" / "s1_ha_5.avi")
    link(flv, tmp_path / "subject 6" / "sadness" / "s6_sa_3.avi")  # no sentence level
    link(flv, tmp_path / "subject 12" / "surprise" / "sentence 2" / "s12_su_2.avi")
    clips = {c.clip_id: c for c in records("enterface05", tmp_path, genders={"6": "f"})}
    assert clips["s1_angry_s1_an_1"].speaker == "1" and clips["s1_angry_s1_an_1"].sentence == "1"
    assert (
        clips["s1_happy_s1_ha_5"].emotion == "happy" and clips["s1_happy_s1_ha_5"].sentence == "5"
    )
    assert clips["s6_sad_s6_sa_3"].sentence == "3" and clips["s6_sad_s6_sa_3"].gender == "female"
    assert clips["s12_surprised_s12_su_2"].gender == "unknown"


def test_enterface05_file_outside_the_layout_is_unlabelled(tmp_path):
    flv = shared("crema-d-mini/1001_DFA_ANG_XX.flv")
    link(flv, tmp_path / "subject 1" / "boredom" / "s1_bo_1.avi")
    [item] = list(iter_records("enterface05", tmp_path))
    assert isinstance(item, Unlabelled) and "subject N/<emotion>" in item.reason


def test_savee_codes_and_speakers(tmp_path):
    flv = shared("crema-d-mini/1001_DFA_ANG_XX.flv")
    for name in ("DC/a01.avi", "JE/sa03.avi", "JK/su15.avi", "KL/n30.avi", "KL/d02.avi"):
        link(flv, tmp_path / name)
    link(flv, tmp_path / "KL" / "x01.avi")
    items = list(iter_records("savee", tmp_path))
    clips = {i.clip_id: i for i in items if isinstance(i, ClipRecord)}
    assert {k: v.emotion for k, v in clips.items()} == {
        "DC_a01": "angry",
        "JE_sa03": "sad",
        "JK_su15": "surprised",
        "KL_n30": "neutral",
        "KL_d02": "disgust",
    }
    assert {c.gender for c in clips.values()} == {"male"}
    assert [Path(i.path).name for i in items if isinstance(i, Unlabelled)] == ["x01.avi"]


def test_rml_default_and_custom_pattern(tmp_path):
    flv = shared("crema-d-mini/1001_DFA_ANG_XX.flv")
    link(flv, tmp_path / "s1" / "an1.avi")
    link(flv, tmp_path / "s2" / "su12.avi")
    clips = {c.clip_id: c for c in records("rml", tmp_path, genders={"s2": "male"})}
    assert clips["s1_an1"].emotion == "angry" and clips["s1_an1"].speaker == "s1"
    assert clips["s2_su12"].emotion == "surprised" and clips["s2_su12"].gender == "male"
    other = tmp_path / "other"
    link(flv, other / "subj3" / "3_fear_07.avi")
    [clip] = records(
        "rml", other, pattern=r"^\d+_(?P<emotion>[a-z]+)_", emotions={"fear": "fearful"}
    )
    assert (clip.speaker, clip.emotion) == ("subj3", "fearful")
    with pytest.raises(BadInputError, match="named group"):
        list(iter_records("rml", other, {"pattern": r"^\d+"}))


def test_manifest_with_relative_paths_and_folds(tmp_path):
    flac = shared("ravdess-speech/Actor_03/03-01-05-02-01-01-03.flac")
    link(flac, tmp_path / "clips" / "a.flac")
    link(flac, tmp_path / "clips" / "b.flac")
    (tmp_path / "manifest.csv").write_text(
        "path,speaker,emotion,gender,fold\nclips/a.flac,p1,Angry,F,0\nclips/b.flac,p2,bored,m,-1\n"
    )
    items = list(iter_records("manifest", tmp_path))
    [clip] = [i for i in items if isinstance(i, ClipRecord)]
    assert (clip.clip_id, clip.speaker, clip.emotion, clip.gender, clip.fold) == (
        "a",
        "p1",
        "angry",
        "female",
        0,
    )
    assert clip.path == tmp_path / "clips" / "a.flac"
    [bad] = [i for i in items if isinstance(i, Unlabelled)]
    assert "bored" in bad.reason and "line 3" in bad.reason


def test_manifest_missing_column_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,emotion\nx.wav,angry\n")
    with pytest.raises(BadInputError, match=r"manifest.csv: manifest lacks columns \['speaker'\]"):
        list(iter_records("manifest", tmp_path))


def test_demo_names(tmp_path):
    flac = shared("ravdess-speech/Actor_03/03-01-05-02-01-01-03.flac")
    link(flac, tmp_path / "spk03_f_angry_01.mp4")
    link(flac, tmp_path / "notes_about_it.mp4")
    items = list(iter_records("demo", tmp_path))
    clip = next(i for i in items if isinstance(i, ClipRecord))
    assert (clip.speaker, clip.gender, clip.emotion, clip.sentence) == (
        "spk03",
        "female",
        "angry",
        "01",
    )
    assert sum(isinstance(i, Unlabelled) for i in items) == 1


def test_unknown_adapter_and_missing_root(tmp_path):
    with pytest.raises(BadInputError, match="unknown data.dataset 'iemocap'"):
        list(iter_records("iemocap", tmp_path))
    with pytest.raises(BadInputError, match="data.root does not exist"):
        list(iter_records("ravdess", tmp_path / "missing"))
    with pytest.raises(BadInputError, match="bad data.options for savee"):
        list(iter_records("savee", tmp_path, {"colour": "red"}))
