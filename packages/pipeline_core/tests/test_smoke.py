def test_import():
    import pipeline_core
    assert pipeline_core.__name__ == "pipeline_core"
