//! Tables handed over through the pool of allocated shared memory. Part of the `runtime`
//! test binary (tests/runtime.rs).

use super::*;

/// Tables handed over through the pool of allocated shared memory: the second invocation
/// writes into files the first left, its output file holds only zeros before it writes
/// (never another invocation's bytes), and every table still arrives whole. Small tables
/// are copied, and their files go back to the pool after Basin has gone on.
#[tokio::test]
async fn handed_over_tables_reuse_allocated_memory_and_leak_nothing() {
    handed_over_tables(RuntimeOptions::default()).await;
}

/// The same with every table mapped: Basin waits until the function's processes have
/// ended before it reads their output.
#[tokio::test]
async fn mapped_tables_reuse_allocated_memory_and_leak_nothing() {
    handed_over_tables(RuntimeOptions {
        copy_outputs_below: 0,
        ..RuntimeOptions::default()
    })
    .await;
}

async fn handed_over_tables(options: RuntimeOptions) {
    // Fresh children: a kept child's files never go back to the pool (it may still hold
    // them), so the pool serves the invocations whose child ends.
    let rt = runtime(RuntimeOptions {
        reuse: false,
        ..options
    });
    let counters = rt.options().counters.clone();
    let pooled = || {
        counters
            .handoff_pool_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let echo = "def echo(orders):\n    return orders\n";
    let (first, _) = invoke(&rt, echo, "echo", Some(orders()), Limits::default()).await;
    let Ok(Output::Table { batches, .. }) = &first.result else {
        panic!("{:?}", first.result.as_ref().err());
    };
    assert_eq!(batches[0], orders());
    drop(first);
    // Its input and output files go back to the pool, fresh files are made in the
    // background (sized by the output), and the next invocation's output file is one of
    // them: read before the function writes it, it holds only zeros.
    let peek = r#"
def peek(orders):
    try:
        with open("../output.arrow", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        data = b""
    return {"size": len(data), "zeros": data.count(0) == len(data)}
"#;
    let mut second = None;
    for _ in 0..100 {
        let (finished, _) = invoke(&rt, peek, "peek", Some(orders()), Limits::default()).await;
        if json(&finished)["size"].as_u64().unwrap() > 0 {
            second = Some(finished);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = second.expect("no pooled output file after 100 invocations");
    assert!(pooled() >= 4096, "the pool holds {} bytes", pooled());
    let seen = json(&second);
    assert_eq!(seen["zeros"], true, "a pooled output file held old bytes");
    assert_eq!(
        second.record.bytes_out, 0,
        "an unused output file is not output"
    );
    drop(second);

    let small = orders().slice(1, 2);
    let (third, _) = invoke(&rt, echo, "echo", Some(small.clone()), Limits::default()).await;
    let Ok(Output::Table { batches, .. }) = &third.result else {
        panic!("{:?}", third.result.as_ref().err());
    };
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].num_rows(), 2);
    assert_eq!(batches[0].column(0).as_ref(), small.column(0).as_ref());
    let hits = counters
        .handoff_pool_hits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(hits >= 2, "{hits} tables went through the pool");
}

/// Columns a function passes through (selected, renamed, sliced) come back by reference into
/// its input, between batches it computed, in order and equal; whether its child is kept
/// (the input read again into memory) or ends (the input mapped).
#[tokio::test]
async fn columns_passed_through_come_back_by_reference_between_computed_batches() {
    let shape = r#"
import pyarrow as pa
def shape(orders):
    picked = orders.select(["status", "id"]).rename_columns(["s", "i"])
    computed = pa.table({"s": ["new"], "i": pa.array([99], pa.int64())}).cast(picked.schema)
    return pa.concat_tables([picked.slice(1, 2), computed, picked])
"#;
    for reuse in [true, false] {
        let rt = runtime(RuntimeOptions {
            reuse,
            copy_outputs_below: 0,
            ..RuntimeOptions::default()
        });
        let input = Some(orders());
        let (finished, _) =
            invoke_reading(&rt, shape, "shape", input, Limits::default(), true).await;
        assert_eq!(
            finished.output_file(),
            None,
            "the file holds part of the table"
        );
        let Ok(Output::Table { batches, .. }) = &finished.result else {
            panic!("{:?}", finished.result.as_ref().err());
        };
        let rows: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(rows, [2, 1, 3], "reuse {reuse}");
        let column = |i: usize| -> Vec<String> {
            let all = arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap();
            let array = arrow::util::display::ArrayFormatter::try_new(
                all.column(i).as_ref(),
                &Default::default(),
            )
            .unwrap();
            (0..all.num_rows())
                .map(|r| array.value(r).to_string())
                .collect()
        };
        assert_eq!(column(0), ["F", "O", "new", "O", "F", "O"]);
        assert_eq!(column(1), ["2", "3", "99", "1", "2", "3"]);
        let by_reference = rt
            .options()
            .counters
            .handoff_by_reference_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            by_reference > 0,
            "reuse {reuse}: nothing came back by reference"
        );
        assert!(finished.record.bytes_out >= by_reference);
    }
}

/// A reply that names bytes outside the function's input (the SDK's `_reference` replaced
/// by the function itself, and its answer forced through it) fails the invocation with what
/// was wrong; nothing is read there.
#[tokio::test]
async fn a_forged_reference_outside_the_input_is_refused() {
    let forge = r#"
import basin._invocation as invocation
def forge(orders):
    def far(batch):
        column = {"input": "orders", "offset": 0, "buffers": [None, [0, 1 << 40]]}
        return {"from": "input", "rows": batch.num_rows, "columns": [column, column]}
    invocation._reference = far
    write = invocation._write_output
    invocation._write_output = lambda value, path, name, by_reference=False: write(value, path, name, True)
    return orders
"#;
    let rt = runtime(RuntimeOptions {
        reuse: false,
        copy_outputs_below: 0,
        ..RuntimeOptions::default()
    });
    let input = Some(orders());
    let (finished, _) = invoke_reading(&rt, forge, "forge", input, Limits::default(), true).await;
    let e = finished.result.unwrap_err().to_string();
    assert!(e.contains("returned a table Basin cannot read"), "{e}");
    assert!(e.contains("lie outside input `orders`"), "{e}");
    // Where the caller reads the output file (`basin invoke --to`, a trigger's `to`), a
    // reference is refused outright; the SDK makes none there.
    let (finished, _) = invoke(&rt, forge, "forge", Some(orders()), Limits::default()).await;
    let e = finished.result.unwrap_err().to_string();
    assert!(e.contains("which this invocation did not allow"), "{e}");
}
