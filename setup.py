"""gankit: StyleGAN inversion and editing toolkit (distribution ``gankit``)."""
from setuptools import setup

setup(
    name="gankit",
    version="0.1.0",
    description="GAN inversion and editing for StyleGAN1/2/3 in pure PyTorch: exact checkpoint loading, "
    "projection, encoders, editing.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=[
        "generators",
        "generators.formats",
        "generators.training",
        "inversion",
        "inversion.faces",
        "encoders",
        "editing",
        "cli",
    ],
    package_data={"generators": ["models/*.safetensors", "models/*.md", "models/*.npz"],
                  "encoders": ["models/*.safetensors", "models/*.json", "models/*.md"]},
    install_requires=[
        # torch/torchvision ranges admit the 2.14.1 / 0.29.1 wheels of this machine's wheel store.
        "torch>=2.1,<=2.14.1",
        "torchvision>=0.16,<=0.29.1",
        "numpy>=1.22",
        "safetensors>=0.4",
        "Pillow>=9.0",
        "click>=8.0",
        "tqdm>=4.60",
        "scikit-learn>=1.1",
        "scipy>=1.8",  # face alignment: the FFHQ padding blur (scipy.ndimage.gaussian_filter)
        "lpips>=0.1.4",
        "dlib-bin>=19.24",
        "face-recognition-models>=0.3.0",
        # face-recognition-models uses pkg_resources, which setuptools 81 removed.
        "setuptools<81",
        "face-alignment>=1.3.5",
    ],
    extras_require={"test": ["pytest>=7"], "video": ["imageio-ffmpeg>=0.4"]},
    entry_points={"console_scripts": ["gankit=cli.main:main"]},
)
