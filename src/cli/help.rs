//! The long help texts of `lts` and its subcommands (`--help`), kept apart from the flags.

pub(super) const ARCH_HELP: &str = "\
Arch files (JSON or TOML) hold: family (gpt2|llama), n_layer, d_model, d_inner, n_head,
[n_kv_head], vocab_size, n_positions, [tie_embeddings], [norm_eps], [rope_theta].
Per-layer fields (d_inner, n_head, n_kv_head) take one number or a list of n_layer numbers.
Example: {\"family\":\"gpt2\",\"n_layer\":2,\"d_model\":256,\"d_inner\":[512,1024],
          \"n_head\":[4,8],\"vocab_size\":50257,\"n_positions\":1024}";

pub(super) const AGENT_HELP: &str = "\
Set-up: `lts agent --init` on the board writes a random key (0600) to --key; copy that file to
the host (same --key path or LTS_AGENT_KEY_FILE there). The key never crosses the link: both
ends prove they hold it by HMAC-SHA256 challenge-response, and every frame after that carries
an HMAC and a sequence number. Links: TCP. USB networking (RNDIS/ECM gadget), an SSH tunnel
(`ssh -L 7207:127.0.0.1:7207 pi`) and `adb forward tcp:7207 tcp:7207` all give the host a TCP
address; --listen 0.0.0.0:7207 exposes the agent on the LAN (only when you say so). Serial
(USB gadget serial, a UART): `lts agent --serial /dev/ttyGS0` on the board, and
`--agent serial:///dev/ttyACM0?baud=115200` on the host; one host at a time.
Jobs run one at a time; the board builds the graph from the job (the host never ships files),
measures with its own clock and thermal sampling and returns the raw samples. A result is kept
for a host that reconnects after a lost link.";

pub(super) const SEARCH_HELP: &str = "\
Built-in spaces: quick (default, ~2 min on 2 cores), gpt2-flex (the LTS GPT-2 space),
llama-flex. Or give a TOML file (see models/*.toml for the format).
Output: results/<run-id>/ with candidates.csv, frontier.csv, measurements.jsonl (raw samples),
run.json, frontier.svg/.png and summary.md. Every measurement is on disk before the next starts:
after a crash or Ctrl-C, `lts search --resume results/<run-id>` continues without re-measuring.";

pub(super) const DEVICE_HELP: &str = "\
Thermal state: thermal zones (/sys/class/thermal), per-core clocks and governor (cpufreq), the
Raspberry Pi throttle bits (vcgencmd get_throttled) and the Jetson power mode (nvpmodel -q);
what this machine does not expose is listed as missing. `lts measure` and `lts search` sample
the same state before and after every candidate and flag throttled measurements.
Profiles: devices/{raspberry-pi-4,raspberry-pi-5,jetson-orin-nano,jetson-nano,x86-host}.toml.";

pub(super) const EVAL_HELP: &str = "\
Defaults: the SmolLM2-135M GGUF of `lts fetch smollm2-135m` on the Brown evaluation slice of
`lts fetch brown`. The text is tokenized with the GGUF file's tokenizer and cut into windows of
--ctx tokens (from --stride apart; the tail shorter than a window is not scored), each run from
an empty cache. Row j of a window predicts its token j + 1; every token is scored once.
Reported: perplexity over all scored positions and over the second half of each window (what
llama.cpp's `perplexity` prints), with a standard error that takes windows as the units, and
tokens/s of the forwards. --kld-against REF (llama.cpp's --kl-divergence): KL(REF || model) and
top-1 agreement over every scored position, and REF's own perplexity on the same windows.
Cross-check against llama.cpp: scripts/crosscheck_ppl.py (see benches/README.md).";

pub(super) const QUANTIZE_HELP: &str = "\
Schemes (comma-separated, each name[:option...]):
  fp32                     the baseline (nothing written)
  fp16                     fp16 weights, cast to fp32 before use
  int8-dynamic             int8 weights per output channel (:per-tensor), activations quantized
                           at run time (DynamicQuantizeLinear + MatMulInteger, as ORT's
                           quantize_dynamic); :head also quantizes the LM head
  int8-static[:METHOD]     QDQ int8 weights and activations; activation ranges from --calib
                           sequences by minmax (default), percentile (:p=99.9 or --percentile),
                           mse or entropy; :sym for int8 symmetric activations (default :asym,
                           uint8), :per-tensor (default :per-channel), :head
  int4[:bN]                4-bit weight blocks of N = 16..256 along K (default b32) for
                           com.microsoft.MatMulNBits; :zp for a zero point per block (default
                           :sym, none); :head
Each choice once: contradictory options (int8-static:mse:entropy, int4:zp:sym) are refused.
Mixed precision: any int scheme takes :keep=NAME[+NAME...], which leaves in fp32 every weight
multiply whose weight name contains NAME (ORT's nodes_to_exclude), e.g. int8-dynamic:keep=down_proj
for models with massive activations at the MLP output projection's input (SmolLM2, Llama).
Fidelity: SQNR of the logits, mean and p99 KL divergence (fp32 || quantized), top-1 agreement
and the largest logit error, on --eval sequences other than the calibration ones. Files:
<out>/<arch-id>.<scheme>.{prefill,decode}.onnx; `lts measure --onnx FILE` times one, and
`lts eval --onnx FILE --kld-against MODEL.gguf` scores a --logits all prefill on text.";
