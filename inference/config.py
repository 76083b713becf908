# Settings of inference/inference.py. Each one can be overridden: python inference/inference.py --name value
# Relative paths are looked up from the current folder, then from the repository root.

from notagen.generation.piece import GenerationSettings as _defaults  # the one home of the generation defaults

INFERENCE_WEIGHTS_PATH = ""  # checkpoint to generate from: a file or a folder holding one (published NotaGen or a project file, a baseline too; type and sizes are read from it); "" = the shipped one (weights/embedded/), else the main job's
NUM_SAMPLES = 8  # pieces to generate (the published script made 1000)
TOP_K = _defaults.top_k  # sample among the k most probable chars (published 9; 1 = greedy, 0 = no top-k cut)
TOP_P = _defaults.top_p  # then among the most probable chars whose probabilities sum past p (published 0.9)
TEMPERATURE = _defaults.temperature  # then sharpen (<1) or flatten (>1) the distribution (published 1.2)
PROMPT = "Romantic|Chopin, Frederic|Keyboard"  # period|composer|instrumentation, or prompt lines separated by \n, or an .abc file to continue; "all" = NUM_SAMPLES pieces for every prompt of PROMPT_LIST, in one stream
KEY = ""  # key of the piece, written as its K: line: an ABC key such as C, Dm, Eb, F#min, Ador ("" = the model chooses)
METER = ""  # time signature, written as its M: line: 3/4, 6/8, 2+3/8, C or C| ("" = the model chooses); with the bar check every bar of every voice lasts it (a pickup first bar may be shorter)
TEMPO = None  # quarter notes per minute, 20 to 400, written as the Q:1/4=<tempo> line (none = the model chooses)
BARS = None  # full bars of the piece in every voice, 1 to 1000 (a pickup bar comes on top); it ends after them and not before (none = the model decides)
CONTINUE_FROM = ""  # a music file to continue (standard, interleaved or generated ABC, MusicXML .xml/.musicxml/.mxl, MIDI .mid/.midi); PROMPT's lines go in front ("" PROMPT: none)
CONTINUE_BARS = 8  # bars of CONTINUE_FROM the model continues from (a pickup bar is bar 1; 0 = all of them)
PROMPT_LIST = ""  # file of known period_composer_instrumentation lines to check the prompt against (default: prompts.txt next to the weights, or gradio/prompts.txt)
OUTPUT_DIR = "output"  # parent of the original/, interleaved/, xml/, midi/, failed/ and summary/ folders
BATCH_SIZE = 1  # pieces generated together (more = higher throughput, more memory)
SEED = -1  # random seed for reproducible pieces; -1 picks one (it is printed and kept in the summary)
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
NUM_THREADS = 0  # CPU threads for torch (0 = torch default; 1 avoids oversubscription on busy CPUs)
DTYPE = "auto"  # auto (bfloat16 on CUDA, float32 elsewhere), float32, bfloat16, float16, or int8 (CPU only: int8 linear layers, the rest float32; faster and smaller for large models, docs/inference.md)
MAX_CHARS = _defaults.max_chars  # a piece fails once its text is longer than this (published 102400)
MAX_SECONDS = _defaults.max_seconds  # a piece fails after this many seconds (published 20 minutes)
MAX_EMPTY_PATCHES = _defaults.max_empty_patches  # a piece fails as stalled after this many patches in a row without text
BAR_RETRIES = _defaults.bar_retries  # a finished bar line whose voices disagree (a voice twice, unequal durations) is written again, up to this many times (0 = the published sampler; text then streams line by line)
HEADER_RETRIES = _defaults.header_retries  # a header line that declares a voice again, leaves a quote open or names a voice twice in %%score is written again up to this many times, then the whole header as often (0 = the published sampler)
STALL_SECONDS = _defaults.stall_seconds  # a piece that writes no new bar for this many seconds ends (failed, reason no_new_bar; its text is kept); 0 = no limit
GUIDANCE = _defaults.guidance  # classifier-free guidance on the prompt's style lines: each char is drawn from free + g * (prompted - free) logits, the free ones from the same piece without its %period/%composer/%instrumentation lines; > 1 follows the prompt more, at twice the compute (1 = off, published)
GREEDY = _defaults.greedy  # always take the most probable char (ignores top_k, top_p, temperature)
CONVERT = True  # also write MusicXML and MIDI for every finished piece
RENDER = False  # also write the score pages (svg/) and audio (audio/) of every finished piece (needs convert)
AUDIO_FORMAT = "mp3"  # audio file type with render: mp3, wav, ogg or flac
SYNTH = "auto"  # MIDI -> audio: auto (fluidsynth + a system GM soundfont where installed, else midirenderer), fluidsynth or midirenderer
SOUNDFONT = ""  # a General MIDI .sf2 file for the synth (default: FluidR3_GM for fluidsynth, pretty_midi's TimGM6mb for midirenderer)
STREAM = True  # print the text while it is generated (when batch_size is 1)
