import pytest

from qdanalysis.errors import ConfigError
from qdanalysis.runner.answers import answer_key, check_answer, extract_answer, grade, strip_think


def test_json_block_wins_over_later_text():
    text = (
        'Thinking...\n```json\n{"reasoning": "a {nested} brace",\n "answer": "42"}\n```\nanswer: 7'
    )
    assert extract_answer(text, family="math") == ("42", "json")


def test_regex_fallback_unquoted():
    assert extract_answer('{"reasoning": "broken, "answer": 17', family="math") == ("17", "regex")


def test_boxed_then_family_fallback():
    assert extract_answer(r"so \boxed{\frac{1}{2}}", family="math") == (r"\frac{1}{2}", "boxed")
    assert extract_answer("#### 1,234", family="math") == ("1,234", "fallback")
    assert extract_answer("I choose (D) because", family="multiple_choice") == ("D", "fallback")
    assert extract_answer("no idea", family="multiple_choice") == (None, None)


def test_think_traces_are_stripped():
    assert strip_think('<think>answer: 9</think>\n{"answer": "3"}') == ('{"answer": "3"}', True)
    assert extract_answer("<think>answer: 9</think>answer: 3", family="math")[0] == "3"


@pytest.mark.parametrize(
    ("answer", "key"),
    [("C", "C"), ("(c)", "C"), ("B) library", "B"), ("d. mall", "D"), ("mall", "D"), ("zz", None)],
)
def test_letter_keys(answer, key):
    assert answer_key(answer, family="multiple_choice", choices=["a", "b", "c", "mall"]) == key


def test_math_verify_equivalence():
    assert check_answer(answer_key("$1,000", family="math"), "1000", family="math") == 1.0
    assert check_answer(answer_key(r"\frac{3}{4}", family="math"), "0.75", family="math") == 1.0
    assert check_answer(answer_key(r"\sqrt{4}", family="math"), "2", family="math") == 1.0
    assert check_answer(answer_key("5", family="math"), "4", family="math") == 0.0


def test_math_verify_works_off_the_main_thread():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        assert ex.submit(check_answer, r"\frac{1}{2}", "0.5", family="math").result() == 1.0


def test_crux_literals():
    assert answer_key("assert f(1) == [1,2]", family="crux") == "[1, 2]"
    assert check_answer(answer_key("(1, 'a')", family="crux"), "(1,'a')", family="crux") == 1.0
    assert check_answer(answer_key("'abc'", family="crux"), '"abc"', family="crux") == 1.0
    assert check_answer(answer_key("1.0", family="crux"), "1", family="crux") == 0.0
    assert check_answer("abc", "'abc'", family="crux", crux_mode="zeroeval") == 1.0


def test_equal_keys_imply_equal_correct():
    refs = ["18", "0.5", r"\frac{1}{3}"]
    answers = ["18", "18.0", "$18", "0.50", r"\frac12", "1/3", "x", "0.333"]
    for ref in refs:
        seen = {}
        for a in answers:
            g = grade(f'{{"answer": "{a}"}}', ref, family="math")
            if g.answer_key is not None:
                assert seen.setdefault(g.answer_key, g.correct) == g.correct


def test_unknown_family_is_an_error():
    with pytest.raises(ConfigError, match="expected one of"):
        extract_answer("x", family="nope")
