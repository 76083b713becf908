# Settings of the demo page, gradio/demo.py. Each one can be overridden: python gradio/demo.py --name value
# Relative paths are looked up from the current folder, then from the repository root.

from notagen.generation.piece import GenerationSettings as _defaults  # the one home of the generation defaults

WEIGHTS_PATH = ""  # checkpoint to generate from (published NotaGen-X or a project file; sizes are read from it); "" = the shipped one (weights/embedded/), else the main job's under runs/main/
PROMPT_LIST = ""  # the period_composer_instrumentation combinations the checkpoint knows; "" = prompts.txt next to the weights, else gradio/prompts.txt (NotaGen-X's 112)
DEVICE = "auto"  # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
DTYPE = "auto"  # auto (bfloat16 on CUDA, float32 elsewhere), float32, bfloat16, float16, or int8 (CPU only: int8 linear layers, the rest float32; faster and smaller for large models, docs/inference.md)
NUM_THREADS = 0  # CPU threads for torch (0 = torch default)
HOST = "127.0.0.1"  # address to serve on; 0.0.0.0 opens the page to the network (only when you ask for it)
PORT = 7860  # port to serve on (0 = the first free one from 7860 on)
OUTPUT_DIR = "runs/demo"  # every run gets its own folder here: settings.json and each piece's ABC, MusicXML, MIDI, audio and score pages
TOP_K = _defaults.top_k  # initial top-k on the page (published 9)
TOP_P = _defaults.top_p  # initial top-p on the page (published 0.9)
TEMPERATURE = 1.0  # initial temperature on the page (published 1.2, for NotaGen-X; the small shipped model writes far more usable pieces at 1.0)
GUIDANCE = 1.0  # initial prompt strength on the page: classifier-free guidance on the style lines (1 = off, as published; 1.5 follows a rare prompt more at twice the compute and fewer usable pieces, docs/shipped-model.md)
KEY = ""  # initial key field on the page: an ABC key such as Dm, Eb, F#min ("" = the model chooses)
METER = ""  # initial meter field: 3/4, 6/8, C ... ("" = the model chooses); with the bar check every bar lasts it
TEMPO = None  # initial tempo field, quarter notes per minute (none = the model chooses)
BARS = None  # initial bars field: full bars of the piece, a pickup on top (none = the model decides)
MAX_VARIATIONS = 8  # most variations generated together (through the engine's batching)
MAX_CHARS = 12000  # a piece fails (partial text kept and shown) once its text is longer than this
MAX_SECONDS = 600.0  # a piece fails after this many seconds
MAX_EMPTY_PATCHES = _defaults.max_empty_patches  # a piece fails as stalled after this many patches in a row without text
STALL_SECONDS = 20.0  # a piece that writes no new bar for this many seconds ends as stalled (its finished bars are kept), so the queue's next user starts; 0 = no limit
BAR_RETRIES = _defaults.bar_retries  # a finished bar line whose voices disagree is written again, up to this many times (0 = the published sampler)
HEADER_RETRIES = _defaults.header_retries  # a header line that declares a voice again (or names one twice in %%score) is written again up to this many times, then the whole header (0 = the published sampler)
CONTINUE_BARS = 8  # bars of an uploaded piece the model continues from (0 = all of them); also the initial N of "keep bars 1 to N" (rewrite the rest of the piece on screen)
SCORE_EVERY_BARS = 8  # the growing score is engraved again every this many bars
STREAM_INTERVAL = 0.1  # seconds between two updates of the streamed text (the line being written included)
AUDIO_FORMAT = "mp3"  # audio file type: mp3, wav, ogg or flac
SYNTH = "auto"  # MIDI -> audio: auto (fluidsynth + a system GM soundfont where installed, else midirenderer), fluidsynth or midirenderer
SOUNDFONT = ""  # a General MIDI .sf2 file for the synth (default: FluidR3_GM for fluidsynth, pretty_midi's TimGM6mb for midirenderer)
MAX_QUEUE = 8  # requests waiting for the one generation slot; more are refused with a message
