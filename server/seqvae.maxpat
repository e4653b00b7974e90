{
 "patcher": {
  "fileversion": 1,
  "appversion": {
   "major": 8,
   "minor": 5,
   "revision": 0,
   "architecture": "x64",
   "modernui": 1
  },
  "classnamespace": "box",
  "rect": [
   80.0,
   80.0,
   760.0,
   480.0
  ],
  "boxes": [
   {
    "box": {
     "id": "comment-1",
     "maxclass": "comment",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      20,
      10,
      700,
      22.0
     ],
     "text": "seqvae from Max: run `seqvae serve`, click the messages, turn the dial (morph a <-> b). Replies print in the Max console; live notes go to noteout."
    }
   },
   {
    "box": {
     "id": "send",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      20,
      420,
      160,
      22.0
     ],
     "text": "udpsend 127.0.0.1 57130"
    }
   },
   {
    "box": {
     "id": "lb",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      20,
      50,
      60,
      22.0
     ],
     "text": "loadbang",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "hello",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      20,
      80,
      360,
      22.0
     ],
     "text": "/seqvae/reply_to 57131, /seqvae/note_target 127.0.0.1 57131",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "ping",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      20,
      120,
      100,
      22.0
     ],
     "text": "/seqvae/ping 1",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "sa",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      130,
      120,
      130,
      22.0
     ],
     "text": "/seqvae/sample a 0.5",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "sb",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      270,
      120,
      130,
      22.0
     ],
     "text": "/seqvae/sample b 0.5",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "dial",
     "maxclass": "dial",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      20,
      160,
      40,
      22.0
     ],
     "outlettype": [
      ""
     ],
     "size": 101.0
    }
   },
   {
    "box": {
     "id": "scale",
     "maxclass": "newobj",
     "numinlets": 6,
     "numoutlets": 1,
     "patching_rect": [
      20,
      220,
      110,
      22.0
     ],
     "text": "scale 0 100 0. 1.",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "morph",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      20,
      250,
      170,
      22.0
     ],
     "text": "prepend /seqvae/morph a b",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "play",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      20,
      290,
      120,
      22.0
     ],
     "text": "/seqvae/play morph",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "stop",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      150,
      290,
      90,
      22.0
     ],
     "text": "/seqvae/stop",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "tempo",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      250,
      290,
      120,
      22.0
     ],
     "text": "/seqvae/tempo 100",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "export",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      20,
      320,
      200,
      22.0
     ],
     "text": "/seqvae/export morph take1.mid",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "interp",
     "maxclass": "message",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      230,
      320,
      200,
      22.0
     ],
     "text": "/seqvae/interpolate a b 8 walk",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "recv",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 1,
     "patching_rect": [
      450,
      50,
      120,
      22.0
     ],
     "text": "udpreceive 57131",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "route",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 4,
     "patching_rect": [
      450,
      80,
      280,
      22.0
     ],
     "text": "route /seqvae/note /seqvae/notes /seqvae/error",
     "outlettype": [
      "",
      "",
      "",
      ""
     ]
    }
   },
   {
    "box": {
     "id": "print",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      600,
      120,
      90,
      22.0
     ],
     "text": "print seqvae"
    }
   },
   {
    "box": {
     "id": "perr",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      600,
      150,
      120,
      22.0
     ],
     "text": "print seqvae-error"
    }
   },
   {
    "box": {
     "id": "pnotes",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 0,
     "patching_rect": [
      600,
      180,
      120,
      22.0
     ],
     "text": "print seqvae-notes"
    }
   },
   {
    "box": {
     "id": "unpack",
     "maxclass": "newobj",
     "numinlets": 1,
     "numoutlets": 4,
     "patching_rect": [
      450,
      120,
      110,
      22.0
     ],
     "text": "unpack s 0 0 0.",
     "outlettype": [
      "",
      "",
      "",
      ""
     ]
    }
   },
   {
    "box": {
     "id": "ms",
     "maxclass": "newobj",
     "numinlets": 2,
     "numoutlets": 1,
     "patching_rect": [
      520,
      150,
      60,
      22.0
     ],
     "text": "* 1000.",
     "outlettype": [
      ""
     ]
    }
   },
   {
    "box": {
     "id": "mk",
     "maxclass": "newobj",
     "numinlets": 3,
     "numoutlets": 2,
     "patching_rect": [
      450,
      190,
      110,
      22.0
     ],
     "text": "makenote 80 250",
     "outlettype": [
      "",
      ""
     ]
    }
   },
   {
    "box": {
     "id": "nout",
     "maxclass": "newobj",
     "numinlets": 3,
     "numoutlets": 0,
     "patching_rect": [
      450,
      220,
      70,
      22.0
     ],
     "text": "noteout 1"
    }
   }
  ],
  "lines": [
   {
    "patchline": {
     "source": [
      "hello",
      0
     ],
     "destination": [
      "send",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "ping",
      0
     ],
     "destination": [
      "send",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "sa",
      0
     ],
     "destination": [
      "send",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "sb",
      0
     ],
     "destination": [
      "send",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "play",
      0
     ],
     "destination": [
      "send",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "stop",
      0
     ],
     "destination": [
      "send",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "tempo",
      0
     ],
     "destination": [
      "send",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "export",
      0
     ],
     "destination": [
      "send",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "interp",
      0
     ],
     "destination": [
      "send",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "lb",
      0
     ],
     "destination": [
      "hello",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "dial",
      0
     ],
     "destination": [
      "scale",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "scale",
      0
     ],
     "destination": [
      "morph",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "morph",
      0
     ],
     "destination": [
      "send",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "recv",
      0
     ],
     "destination": [
      "route",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "route",
      0
     ],
     "destination": [
      "unpack",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "route",
      1
     ],
     "destination": [
      "pnotes",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "route",
      2
     ],
     "destination": [
      "perr",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "route",
      3
     ],
     "destination": [
      "print",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "unpack",
      3
     ],
     "destination": [
      "ms",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "ms",
      0
     ],
     "destination": [
      "mk",
      2
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "unpack",
      2
     ],
     "destination": [
      "mk",
      1
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "unpack",
      1
     ],
     "destination": [
      "mk",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "mk",
      0
     ],
     "destination": [
      "nout",
      0
     ]
    }
   },
   {
    "patchline": {
     "source": [
      "mk",
      1
     ],
     "destination": [
      "nout",
      1
     ]
    }
   }
  ]
 }
}
